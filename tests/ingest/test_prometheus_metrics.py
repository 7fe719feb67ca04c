"""Ingest's /metrics: parses as Prometheus text and moves with traffic (real tansu broker, chDB keys)."""

from __future__ import annotations

import time

import httpx

from llmscope.metrics import refreshed_on_scrape
from llmscope.settings import Settings
from llmscope.storage import Store
from tests.ingest.conftest import make_client
from tests.otlp_factory import llm_span, request_of
from tests.prometheus import value

PB = {"content-type": "application/x-protobuf"}


async def _metrics(client: httpx.AsyncClient) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


async def test_accepted_and_rejected_spans_produce_latency_and_request_latency_move(ingest, tenant_keys) -> None:
    before = await _metrics(ingest)
    future = llm_span(start_ns=time.time_ns() + 10 * 24 * 3600 * 10**9)
    body = request_of([llm_span(), llm_span(), future]).SerializeToString()
    r = await ingest.post("/v1/traces", content=body, headers={**PB, "authorization": f"Bearer {tenant_keys['a']}"})
    assert r.status_code == 200
    after = await _metrics(ingest)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("llmscope_spans_accepted_total", format="otlp-traces-v1") == 2
    assert moved("llmscope_spans_rejected_total", format="otlp-traces-v1", reason="start_time_out_of_range") == 1
    assert moved("llmscope_kafka_produce_duration_seconds_count", outcome="ok") >= 1
    assert moved("llmscope_rate_limit_decisions_total", decision="allowed") == 1
    route = {"app": "ingest", "method": "POST", "route": "/v1/traces", "status": "200"}
    assert moved("llmscope_http_request_duration_seconds_count", **route) == 1


async def test_rate_limited_requests_are_counted_as_limited(settings: Settings, store: Store, tenant_keys) -> None:
    client, producer = await make_client(settings, store, rate_limit_per_key=1.0, rate_limit_burst_seconds=1.0)
    try:
        before = await _metrics(client)
        headers = {**PB, "authorization": f"Bearer {tenant_keys['a_ingest_only']}"}
        body = request_of([llm_span()]).SerializeToString()
        statuses = [(await client.post("/v1/traces", content=body, headers=headers)).status_code for _ in range(3)]
        assert statuses.count(429) == 2
        after = await _metrics(client)
        limited = {"decision": "limited"}
        assert value(after, "llmscope_rate_limit_decisions_total", **limited) - value(before, "llmscope_rate_limit_decisions_total", **limited) == 2
        route = {"app": "ingest", "route": "/v1/traces", "status": "429"}
        assert value(after, "llmscope_http_request_duration_seconds_count", **route) >= 2
    finally:
        await client.aclose()
        await producer.close()


async def test_unknown_paths_share_one_label_rather_than_one_each(ingest) -> None:
    for i in range(3):
        await ingest.get(f"/no/such/path/{i}")
    text = await _metrics(ingest)
    assert "/no/such/path" not in text
    assert value(text, "llmscope_http_request_duration_seconds_count", app="ingest", route="<unmatched>", status="404") >= 3


async def test_a_measurement_that_fails_at_scrape_time_leaves_the_scrape_answering(ingest) -> None:
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ConnectionError("broker unreachable")

    with refreshed_on_scrape(broken):
        r = await ingest.get("/metrics")
    assert r.status_code == 200 and calls == [1]
    assert value(r.text, "llmscope_spans_accepted_total") >= 0
    await ingest.get("/metrics")
    assert calls == [1]  # refreshed only while registered
