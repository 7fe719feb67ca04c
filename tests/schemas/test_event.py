"""The SDK event contract: validation messages, batch partial acceptance, the committed schema."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import schemas.event as event_module
from llmscope.errors import BadRequest, PayloadTooLarge
from schemas.event import (
    MAX_CONTENT_BYTES,
    EventBatch,
    LLMEvent,
    format_errors,
    validate_batch,
)
from schemas.usage import MAX_TOKENS

T0 = "2026-03-04T05:06:07.123456789Z"
T0_NS = 1772600767123456789


def ev(**fields: object) -> dict[str, object]:
    return {"id": "evt-1", "timestamp": T0, **fields}


def errors_of(**fields: object) -> list[str]:
    with pytest.raises(ValidationError) as info:
        LLMEvent.model_validate(ev(**fields))
    return format_errors(info.value)


def test_committed_json_schema_matches_the_model() -> None:
    committed = json.loads(Path(event_module.__file__).with_name("event.schema.json").read_text())
    assert committed == LLMEvent.model_json_schema(), "regenerate with: python -m schemas.event"


def test_minimal_event_gets_defaults_and_derived_span_id() -> None:
    event = LLMEvent.model_validate({"id": "abc", "timestamp": T0})
    assert event.timestamp == T0_NS
    assert event.span_id == hashlib.sha256(b"abc").hexdigest()[:16]
    assert event.trace_id is None and event.operation == "chat" and event.status == "ok"


@pytest.mark.parametrize(
    ("given", "ns"),
    [
        (T0_NS, T0_NS),
        ("2026-03-04T05:06:07Z", 1772600767 * 10**9),
        ("2026-03-04T06:06:07.5+01:00", 1772600767 * 10**9 + 500_000_000),
        ("2026-03-04t05:06:07.000000001z", 1772600767 * 10**9 + 1),
    ],
)
def test_timestamp_forms(given: object, ns: int) -> None:
    assert LLMEvent.model_validate(ev(timestamp=given)).timestamp == ns


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        (1772600767, "seconds or milliseconds sent?"),
        (1772600767123, "seconds or milliseconds sent?"),
        ("2026-03-04T05:06:07", "RFC 3339"),
        ("2026-13-04T05:06:07Z", "not a valid date-time"),
        (1.77e18, "not float"),
        (True, "not a boolean"),
    ],
)
def test_bad_timestamps_are_named(given: object, fragment: str) -> None:
    (message,) = errors_of(timestamp=given)
    assert message.startswith("timestamp: ") and fragment in message


def test_hex_ids_are_validated_and_lowercased() -> None:
    event = LLMEvent.model_validate(ev(trace_id="AB" * 16, span_id="CD" * 8, parent_span_id="EF" * 8))
    assert (event.trace_id, event.span_id, event.parent_span_id) == ("ab" * 16, "cd" * 8, "ef" * 8)
    assert errors_of(trace_id="xyz") == ["trace_id: must be 32 hex characters, got 3 characters 'xyz'"]
    assert errors_of(span_id="0" * 16) == ["span_id: must not be all zeros (an invalid id in W3C trace context)"]


def test_parent_needs_an_explicit_trace_and_must_differ_from_span() -> None:
    assert errors_of(parent_span_id="1" * 16)[0].startswith("trace_id: is required when parent_span_id is set")
    assert errors_of(trace_id="a" * 32, span_id="1" * 16, parent_span_id="1" * 16) == ["parent_span_id: equals span_id"]


def test_strict_types_and_unknown_fields() -> None:
    errors = errors_of(input_tokens="5", output_tokens=-1, colour="red", status="fine")
    assert "input_tokens: Input should be a valid integer" in errors
    assert "output_tokens: Input should be greater than or equal to 0" in errors
    assert "colour: Extra inputs are not permitted" in errors
    assert any(e.startswith("status: Input should be 'ok' or 'error'") for e in errors)


def test_token_classes_must_fit_inside_the_totals() -> None:
    assert errors_of(input_tokens=10, cached_input_tokens=8, cache_write_tokens=3)[0].startswith(
        "cached_input_tokens: 8 + cache_write_tokens 3 exceed input_tokens 10"
    )
    assert errors_of(output_tokens=5, reasoning_tokens=6)[0].startswith("reasoning_tokens: 6 exceed output_tokens 5")


def test_token_counts_are_capped_at_the_shared_bound() -> None:
    assert errors_of(input_tokens=MAX_TOKENS + 1) == [f"input_tokens: Input should be less than or equal to {MAX_TOKENS}"]
    assert LLMEvent.model_validate(ev(input_tokens=MAX_TOKENS)).input_tokens == MAX_TOKENS


def test_usage_reported_false_with_counts_is_refused() -> None:
    assert errors_of(usage_reported=False, output_tokens=2) == [
        "usage_reported: is false but input_tokens or output_tokens is above 0"
    ]


def test_timing_consistency() -> None:
    assert errors_of(end_timestamp="2026-03-04T05:06:06Z") == ["end_timestamp: is before timestamp"]
    assert errors_of(end_timestamp="2026-03-04T05:06:08.123456789Z", latency_ms=5.0)[0].startswith("latency_ms:")
    ok = LLMEvent.model_validate(ev(end_timestamp="2026-03-04T05:06:08.123456789Z", latency_ms=1000.4))
    assert ok.end_ns == T0_NS + 10**9


def test_error_requires_error_status() -> None:
    assert errors_of(error={"type": "RateLimitError", "message": "slow down"}) == ["error: is set but status is 'ok'"]


def test_content_forms_and_size_cap() -> None:
    event = LLMEvent.model_validate(ev(input=[{"role": "user", "content": "hi", "tool_call_id": "x"}], output="hello"))
    assert event.input is not None and event.input[0].model_dump(exclude_none=True)["tool_call_id"] == "x"
    (message,) = errors_of(output="x" * (MAX_CONTENT_BYTES + 1))
    assert message == f"output: is {MAX_CONTENT_BYTES + 3} bytes as JSON; at most {MAX_CONTENT_BYTES}"
    assert errors_of(input=[{"content": "no role"}]) == ["input.messages.0.role: Field required"]
    assert errors_of(input=5) == ["input: must be a string or a list of messages"]


def test_metadata_and_tags() -> None:
    event = LLMEvent.model_validate(ev(tags=["a", "b", "a"], metadata={"k": 1, "flag": False, "none": None}))
    assert event.tags == ["a", "b"]
    assert errors_of(metadata={"bad key": 1})[0].startswith("metadata.bad key.[key]: String should match pattern")
    assert errors_of(metadata={"k": [1]}) == ["metadata.k: must be a string, number, boolean or null, not list"]
    assert errors_of(tags=[""])[0].startswith("tags.0: String should have at least 1 character")


def test_validate_batch_keeps_good_events_and_reports_bad_ones() -> None:
    payload = {
        "events": [
            ev(id="good-1"),
            ev(id="bad-1", input_tokens=-3),
            "not an object",
            ev(id="good-1"),
            {"timestamp": T0},
            ev(id="good-2"),
        ]
    }
    good, bad = validate_batch(payload, max_events=10)
    assert [e.id for e in good] == ["good-1", "good-2"]
    assert bad == [
        {"index": 1, "id": "bad-1", "errors": ["input_tokens: Input should be greater than or equal to 0"]},
        {"index": 2, "id": None, "errors": ["event: must be a JSON object, not str"]},
        {"index": 3, "id": "good-1", "errors": ["id: duplicate of events[0]"]},
        {"index": 4, "id": None, "errors": ["id: Field required"]},
    ]


@pytest.mark.parametrize(
    ("payload", "error", "fragment"),
    [
        ([], BadRequest, "must be a JSON object"),
        ({"events": []}, BadRequest, "non-empty array"),
        ({"events": [ev()], "extra": 1}, BadRequest, "unknown top-level field(s): extra"),
        ({"events": [ev(id=str(i)) for i in range(4)]}, PayloadTooLarge, "has 4 events; at most 3"),
    ],
)
def test_validate_batch_envelope_errors(payload: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        validate_batch(payload, max_events=3)
    assert fragment in str(info.value)


def test_event_batch_model_cap_is_a_parameter() -> None:
    body = {"events": [ev(id="a"), ev(id="b")]}
    assert len(EventBatch.model_validate(body).events) == 2
    with pytest.raises(ValidationError, match="has 2 events; at most 1 per request"):
        EventBatch.model_validate(body, context={"max_events": 1})
