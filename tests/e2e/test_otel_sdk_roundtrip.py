"""The real OpenTelemetry Python SDK exports to `llmscope up`; the spans come back through the query API."""

from __future__ import annotations

import os
from unittest import mock

import httpx
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import StatusCode

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of
from tests.processes import descendants, gone


def _emit_agent_trace(exporter: OTLPSpanExporter, service: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("agent.run") as root:
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attributes(
                {
                    "gen_ai.provider.name": "openai",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.response.finish_reasons": ["stop"],
                    "session.id": "sess-1",
                    "user.id": "user-7",
                }
            )
        with tracer.start_as_current_span("chat claude") as failed:
            failed.set_attributes(
                {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022",
                 "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 0}
            )
            failed.set_status(StatusCode.ERROR, "overloaded")
        trace_id = format(root.get_span_context().trace_id, "032x")
    assert provider.force_flush(10_000)
    provider.shutdown()
    return trace_id


def _find_trace(up: UpProcess, trace_id: str, **params: str) -> dict | None:
    r = httpx.get(f"{up.query_url}/api/v1/traces", params={"limit": 500, **params}, headers=up.auth())
    assert r.status_code == 200, r.text
    return next((t for t in r.json()["data"] if t["trace_id"] == trace_id), None)


def test_otel_sdk_spans_are_readable_through_the_query_api(up: UpProcess) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{up.ingest_url}/v1/traces", headers={"authorization": f"Bearer {up.key}"})
    trace_id = _emit_agent_trace(exporter, "support-bot")

    item = wait_for(lambda: _find_trace(up, trace_id), timeout=30)
    assert item["root_span_name"] == "agent.run"
    assert item["service"] == "support-bot"
    assert item["span_count"] == 3
    assert item["input_tokens"] == 1210 and item["output_tokens"] == 300
    assert item["status"] == "error"
    assert item["duration_ms"] >= 0

    detail = httpx.get(f"{up.query_url}/api/v1/traces/{trace_id}", headers=up.auth()).json()["data"]
    spans = {s["name"]: s for s in detail["spans"]}
    assert set(spans) == {"agent.run", "chat gpt-4o", "chat claude"}
    chat = spans["chat gpt-4o"]
    assert chat["provider"] == "openai" and chat["input_tokens"] == 1200 and chat["output_tokens"] == 300
    assert chat["parent_span_id"] == spans["agent.run"]["span_id"]
    assert chat["session_id"] == "sess-1" and chat["user_id"] == "user-7"
    assert chat["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert spans["chat claude"]["provider"] == "anthropic"
    assert spans["chat claude"]["status"] == "error"
    assert spans["agent.run"]["parent_span_id"] is None

    assert _find_trace(up, trace_id, provider="anthropic")
    assert _find_trace(up, trace_id, session_id="sess-1")
    assert _find_trace(up, trace_id, status="error")
    assert _find_trace(up, trace_id, service="other-service") is None


def test_exporter_configured_only_by_the_printed_environment_lines(up: UpProcess) -> None:
    banner = up.log.read_text()
    lines = dict(
        line.strip().removeprefix("export ").split("=", 1) for line in banner.splitlines() if line.strip().startswith("export ")
    )
    assert set(lines) == {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"}
    with mock.patch.dict(os.environ, lines):
        exporter = OTLPSpanExporter(compression=Compression.Gzip)
    trace_id = _emit_agent_trace(exporter, "env-configured")
    assert wait_for(lambda: _find_trace(up, trace_id), timeout=30)["service"] == "env-configured"


def test_up_stops_cleanly_keeps_data_and_reuses_its_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = start_up(tmp_path)
    exporter = OTLPSpanExporter(endpoint=f"{first.ingest_url}/v1/traces", headers={"x-api-key": first.key})
    trace_id = _emit_agent_trace(exporter, "restart-check")
    wait_for(lambda: _find_trace(first, trace_id), timeout=30)  # stored: the CPU stage runs now
    # A real backlog: thousands of spans acknowledged just before the stop, most not yet stored.
    headers = {"content-type": "application/x-protobuf", "x-api-key": first.key}
    acked = 0
    with httpx.Client(base_url=first.ingest_url) as client:
        for _ in range(20):
            body = request_of([llm_span(input_tokens=3) for _ in range(500)], service="backlog").SerializeToString()
            acked += 500 if client.post("/v1/traces", content=body, headers=headers).status_code == 200 else 0
    family = descendants(first.process.pid)  # every process up runs, just before the stop
    assert len(family) >= 3, "up should run the broker, the CPU stage and its helper as its children"
    assert stop_up(first) == 0
    assert not gone(family), "processes outlived up"

    second = start_up(tmp_path)
    try:
        assert second.key == first.key
        # Everything acknowledged before the stop was drained into the store.
        assert httpx.get(f"{second.query_url}/api/v1/traces/{trace_id}", headers=second.auth()).status_code == 200
        r = httpx.get(f"{second.query_url}/api/v1/metrics/summary", params={"service": "backlog"},
                      headers={**second.auth(), "cache-control": "no-cache"})
        assert r.json()["data"]["requests"] == acked == 10_000
    finally:
        assert stop_up(second) == 0
