"""Prometheus metrics of every role, and the `/metrics` endpoint that serves them.

One registry per process (prometheus-client's default): `up` runs ingest, worker and query in one
process, so any of its `/metrics` serves all three. The worker's CPU stage runs in child processes,
whose counters would never reach a scrape; everything is counted in the parent, from what the
children hand back. No metric carries a tenant or any other unbounded label: cardinality stays
fixed however many tenants, keys or traces there are (per-tenant numbers live in ClickHouse).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmscope.http import ResponseStatus

log = logging.getLogger(__name__)

_SIZES = (1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)

# ingest
SPANS_ACCEPTED = Counter("llmscope_spans_accepted", "Spans (and SDK events) ingest acknowledged.", ["format"])
SPANS_REJECTED = Counter(
    "llmscope_spans_rejected", "Spans (and SDK events) ingest refused in an accepted request, by reason.", ["format", "reason"]
)
RATE_LIMIT_DECISIONS = Counter(
    "llmscope_rate_limit_decisions",
    "Rate-limit checks: allowed, limited (429), or allowed because Redis did not answer (fail_open).",
    ["decision"],
)
KAFKA_PRODUCE_SECONDS = Histogram(
    "llmscope_kafka_produce_duration_seconds", "From send to the broker's acknowledgement, by outcome (ok, failed).", ["outcome"]
)

# both HTTP apps
HTTP_REQUEST_SECONDS = Histogram(
    "llmscope_http_request_duration_seconds",
    "HTTP request latency per app (ingest, query, worker), method, route template and status.",
    ["app", "method", "route", "status"],
)

# worker
CONSUMER_LAG = Gauge(
    "llmscope_consumer_lag_messages", "Messages in a partition the worker group has not committed yet.", ["topic", "partition"]
)
SINK_BATCH_ROWS = Histogram("llmscope_sink_batch_rows", "Rows per store insert, by table.", ["table"], buckets=_SIZES)
SINK_WRITE_SECONDS = Histogram(
    "llmscope_sink_write_duration_seconds", "One batch's insert until it landed, retries included, by table.", ["table"]
)
SINK_FAILING_WRITES = Gauge("llmscope_sink_failing_writes", "Store inserts failing right now (being retried).")
STORE_RETRIES = Counter("llmscope_store_retries", "Failed store insert attempts (each is retried), by table.", ["table"])
DEAD_LETTERS = Counter(
    "llmscope_dead_letters", "Messages (kind=message) or single spans/events (kind=item) parked in the dead-letter topic.", ["kind"]
)
# Outcomes as streams/webhooks/delivery.py classifies an attempt: delivered, retry, gone, failed.
WEBHOOK_DELIVERIES = Counter("llmscope_webhook_deliveries", "Webhook delivery attempts by outcome.", ["outcome"])

# query
CACHE_REQUESTS = Counter(
    "llmscope_query_cache_requests", "Analytics cache look-ups: hit, miss, or error (Redis failed; computed instead).", ["result"]
)

UNMATCHED = "<unmatched>"
OTHER = "<other>"  # mounted apps (the console's static files)


# Gauges that cost a round trip to measure (consumer lag) are measured when scraped, not on a
# timer: an idle process then does no work for them, and what a scrape shows is current.
Refresh = Callable[[], Awaitable[None]]
_on_scrape: list[Refresh] = []
REFRESH_TIMEOUT_SECONDS = 3.0  # well inside Prometheus's default 10 s scrape timeout


@contextlib.contextmanager
def refreshed_on_scrape(refresh: Refresh) -> Iterator[None]:
    """While the block runs, every /metrics of this process first awaits `refresh`."""
    _on_scrape.append(refresh)
    try:
        yield
    finally:
        _on_scrape.remove(refresh)


async def render() -> Response:
    for refresh in list(_on_scrape):
        try:
            await asyncio.wait_for(refresh(), REFRESH_TIMEOUT_SECONDS)
        except Exception as exc:  # a gauge left as last measured; the scrape still answers
            log.warning("cannot refresh a metric for this scrape: %r", exc)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, name: str) -> None:
    """`GET /metrics` (this process's registry) and request latency for every HTTP request of `app`.

    Unauthenticated, like every Prometheus target: no metric holds tenant data. Keep the port on the
    internal network when the API is exposed."""
    app.add_middleware(RequestMetricsMiddleware, name=name)
    app.add_api_route("/metrics", render, methods=["GET"], include_in_schema=False)


class RequestMetricsMiddleware:
    """Times each HTTP request and labels it with its route template (`/api/v1/traces/{trace_id}`,
    never the raw path, whose ids would grow the label set without bound)."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status)
        finally:
            route = getattr(scope.get("route"), "path", None) or (UNMATCHED if status.code == 404 else OTHER)
            HTTP_REQUEST_SECONDS.labels(self.name, scope["method"], route, str(status.code)).observe(time.perf_counter() - start)
