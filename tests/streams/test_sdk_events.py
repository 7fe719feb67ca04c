"""SDK events → spans: every field lands where queries and the OTLP twin put it; ids are deterministic."""

from __future__ import annotations

import hashlib
import json

import pytest

from schemas.event import LLMEvent, derived_span_id, derived_trace_id
from streams.stages.sdk_events import event_to_span
from tests.schemas.test_event import T0_NS, ev


def test_event_to_span_full_mapping() -> None:
    event = LLMEvent.model_validate(
        ev(
            id="call-42",
            latency_ms=250.0,
            parent_span_id="2" * 16,
            trace_id="F" * 32,
            operation="chat",
            provider="openai",
            model="gpt-4o",
            response_model="gpt-4o-2024-08-06",
            input_tokens=100,
            output_tokens=20,
            cached_input_tokens=60,
            cache_write_tokens=10,
            reasoning_tokens=5,
            status="error",
            error={"type": "APIStatusError", "message": "overloaded"},
            input=[{"role": "user", "content": "héllo"}],
            output="hi",
            user_id="u1",
            session_id="s1",
            prompt_name="greet",
            prompt_version="3",
            service_name="svc",
            finish_reasons=["stop"],
            tags=["prod"],
            metadata={"team": "core", "n": 2, "ratio": 0.5, "on": True, "skip": None},
        )
    )
    span = event_to_span(event, "tenant-a")
    assert span.tenant_id == "tenant-a" and span.source == "sdk"
    assert (span.trace_id, span.span_id, span.parent_span_id) == ("f" * 32, derived_span_id("call-42"), "2" * 16)
    assert span.name == "chat gpt-4o" and span.kind == "client" and span.service_name == "svc"
    assert (span.start_time_ns, span.end_time_ns) == (T0_NS, T0_NS + 250_000_000)
    assert (span.status_code, span.status_message) == ("error", "overloaded")
    assert (span.provider, span.request_model, span.response_model) == ("openai", "gpt-4o", "gpt-4o-2024-08-06")
    assert (span.input_tokens, span.output_tokens, span.cached_input_tokens) == (100, 20, 60)
    assert (span.cache_write_tokens, span.reasoning_tokens) == (10, 5)
    assert (span.user_id, span.session_id, span.prompt_name, span.prompt_version) == ("u1", "s1", "greet", "3")
    assert span.finish_reasons == ["stop"]
    assert json.loads(span.attributes["llmscope.prompt"]) == [{"role": "user", "content": "héllo"}]
    assert json.loads(span.attributes["llmscope.completion"]) == "hi"
    assert json.loads(span.attributes["llmscope.tags"]) == ["prod"]
    assert span.attributes["llmscope.metadata.team"] == "core"
    assert span.attributes["llmscope.metadata.n"] == "2"
    assert span.attributes["llmscope.metadata.ratio"] == "0.5"
    assert span.attributes["llmscope.metadata.on"] == "true"
    assert "llmscope.metadata.skip" not in span.attributes
    assert span.attributes["llmscope.event_id"] == "call-42"
    assert span.attributes["error.type"] == "APIStatusError"
    assert [(e.name, e.attributes["exception.message"]) for e in span.events] == [("exception", "overloaded")]
    assert span.resource_attributes == {"service.name": "svc"}
    assert span.to_row(0)["source"] == "sdk"


def test_event_to_span_derives_trace_and_defaults() -> None:
    span = event_to_span(LLMEvent.model_validate(ev(id="x", operation="tool", name="search")), "t")
    assert span.trace_id == hashlib.sha256(b"trace:x").hexdigest()[:32] == derived_trace_id("x")
    assert span.parent_span_id == "" and span.kind == "internal" and span.name == "search"
    assert span.service_name == "unknown_service" and span.end_time_ns == span.start_time_ns
    # Deterministic: a retried event lands on the same ids.
    again = event_to_span(LLMEvent.model_validate(ev(id="x", operation="tool", name="search")), "t")
    assert (again.trace_id, again.span_id) == (span.trace_id, span.span_id)


@pytest.mark.parametrize(
    ("fields", "reported"),
    [
        ({}, False),  # no counts, no flag: usage unknown (as before the flag existed)
        ({"input_tokens": 0, "output_tokens": 0}, False),  # what older SDKs send when usage never arrived
        ({"input_tokens": 3}, True),
        ({"usage_reported": True}, True),  # zero usage, stated: costs $0
        ({"usage_reported": False}, False),
    ],
)
def test_usage_reported_says_zero_is_not_unknown(fields: dict[str, object], reported: bool) -> None:
    span = event_to_span(LLMEvent.model_validate(ev(**fields)), "t")
    assert (span.usage_reported, span.to_row(0)["usage_reported"]) == (reported, int(reported))
