"""schemathesis against the ingest and query OpenAPI documents: no request, valid or not, gets
a 5xx, and documented responses match their schema.

Each app is served by uvicorn on a thread of this process: schemathesis calls are synchronous,
and the ingest's Kafka producer must live on one event loop for all of them."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.specs.openapi.checks import content_type_conformance

from ingest.app import create_ingest_app
from ingest.ratelimit import LocalRateLimiter
from llmscope.auth import KeyResolver, create_key
from llmscope.broker import free_port
from llmscope.http import make_server
from llmscope.kafka import IngestProducer, ensure_topics
from query.app import create_query_app
from streams.compaction import compact
from streams.stages.normalise import normalise
from tests.otlp_factory import kv, llm_span, request_of
from tests.reliability.conftest import private_settings
from tests.streams.test_compaction import store_spans

BOUNDED = hsettings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _serve(app, cleanup=None) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    server = make_server(app, "127.0.0.1", port)

    async def run() -> None:
        await server.serve()
        if cleanup:
            await cleanup()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "server thread died"
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


TENANT = "schemathesis"


@pytest.fixture(scope="module")
def api_key(store) -> str:
    return create_key(store, TENANT, "schemathesis", {"ingest", "read", "admin"})


@pytest.fixture(scope="module")
def seeded(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The tenant holds data in every shape the API returns: LLM and agent spans with costs, users,
    sessions, events and PII counts, their rollups, a price override and a dead letter; so the
    schemas are checked on full answers, not only on empty ones."""
    trace = os.urandom(16)
    root = llm_span(trace, name="agent.run", extra={"gen_ai.operation.name": "invoke_agent", "user.id": "u-1"})
    chat = llm_span(trace, parent=root.span_id, extra={"session.id": "s-1", "user.id": "u-1", "gen_ai.prompt.name": "p"})
    chat.events.add(name="exception", time_unix_nano=chat.start_time_unix_nano, attributes=[kv("exception.type", "E")])
    failed = llm_span(trace, parent=root.span_id, model="no-such-model", error=True)
    spans = normalise(request_of([root, chat, failed]), TENANT)
    spans[1].cost_usd, spans[1].price_source, spans[1].pii_counts = Decimal("0.00123"), "genai-prices", {"email": 2}
    store_spans(store, spans)
    compact(store, datetime.now(timezone.utc), timedelta(hours=2))
    store.insert_rows(f"{store.database}.price_overrides", [{
        "tenant_id": TENANT, "provider": "openai", "model": "gpt-4o", "input_mtok": "2.5", "output_mtok": "10",
        "cached_input_mtok": None, "cache_write_mtok": None, "reasoning_mtok": None, "deleted": 0,
        "updated_at": time.time(), "version": time.time_ns(),
    }])
    store.insert_rows(f"{store.database}.dead_letters", [{
        "tenant_id": TENANT, "message_id": "m1", "item": 0, "parked_at": f"{time.time():.3f}",
        "received_at": f"{time.time():.9f}", "source": "t/0/1", "format": "otlp-traces-v1",
        "trace_id": trace.hex(), "span_id": chat.span_id.hex(), "reason": "a reason", "size_bytes": 10,
    }])
    return {"trace_id": trace.hex()}


@pytest.fixture(scope="module")
def ingest_api(settings, store) -> Iterator[schemathesis.BaseSchema]:
    s = private_settings(settings, "schemathesis")
    asyncio.run(ensure_topics(s))
    producer = IngestProducer(s)
    app = create_ingest_app(s, store, producer, KeyResolver(store, 30.0), LocalRateLimiter())
    for url in _serve(app, producer.close):
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.fixture(scope="module")
def query_url(settings, store) -> Iterator[str]:
    yield from _serve(create_query_app(settings, store, KeyResolver(store, 30.0)))


@pytest.fixture(scope="module")
def query_api(query_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{query_url}/openapi.json")


def _check_every_operation(schema: schemathesis.BaseSchema, api_key: str, known: dict[str, str] | None = None) -> None:
    """Up to 25 generated requests per operation (valid and invalid ones), and for each GET one
    request with the seeded data's parameters (a populated answer); every failing operation is
    reported, not just the first. (schemathesis' pytest plugin does not load on pytest 9, so its
    Python API drives Hypothesis directly.)"""
    headers = {"authorization": f"Bearer {api_key}"}
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if known is not None and operation.method.upper() == "GET":
            params = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
            if len(params) == len(list(operation.path_parameters)):
                try:
                    case = operation.Case(path_parameters=params)
                    response = case.call(headers=headers)
                    assert response.status_code == 200, (operation.label, response.status_code, response.text[:500])
                    case.validate_response(response, checks=CHECKS)
                except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, asserted below
                    failures.append(f"{operation.label} (seeded): {str(exc)[:1500]}")

        @BOUNDED
        @given(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected, asserted below
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


def test_ingest_api_never_answers_5xx_and_matches_its_schema(ingest_api, api_key) -> None:  # type: ignore[no-untyped-def]
    _check_every_operation(ingest_api, api_key)


def test_query_api_never_answers_5xx_and_matches_its_schema(query_api, api_key, seeded) -> None:  # type: ignore[no-untyped-def]
    _check_every_operation(query_api, api_key, seeded)


@pytest.mark.parametrize(
    "path",
    [  # found by the test above: an offset or the default range pushes these past year 1 or 9999
        "/api/v1/metrics/timeseries?end=0001-01-01T00:01:01%2B00:01",
        "/api/v1/metrics/summary?start=9999-12-31T23:00:00-05:00",
        "/api/v1/traces?end=0001-01-01T12:00:00Z",
    ],
)
def test_dates_at_the_edge_of_python_datetime_get_400_not_500(query_url: str, api_key: str, path: str) -> None:
    r = httpx.get(f"{query_url}{path}", headers={"authorization": f"Bearer {api_key}"}, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "bad_request"
