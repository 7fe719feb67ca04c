"""OTLP -> Span normalisation: ids, enums, flattened attributes, GenAI and OpenInference fields."""

from __future__ import annotations

import base64

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from schemas.span import Span
from streams.stages.normalise import MAX_VALUE_BYTES, normalise

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
START = 1_800_000_000_000_000_000


def _value(v: object) -> AnyValue:
    out = AnyValue()
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int):
        out.int_value = v
    elif isinstance(v, float):
        out.double_value = v
    elif isinstance(v, bytes):
        out.bytes_value = v
    elif isinstance(v, list):
        out.array_value.values.extend(_value(x) for x in v)
    elif isinstance(v, dict):
        out.kvlist_value.values.extend(KeyValue(key=k, value=_value(x)) for k, x in v.items())
    elif v is not None:
        out.string_value = str(v)
    return out


def _attrs(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


def _one(
    attrs: dict[str, object] | None = None, resource: dict[str, object] | None = None, **span_fields: object
) -> Span:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(_attrs({"service.name": "chatbot"} if resource is None else resource))
    span = rs.scope_spans.add().spans.add(
        trace_id=TRACE_ID, span_id=SPAN_ID, name="chat", start_time_unix_nano=START, end_time_unix_nano=START + 5
    )
    span.attributes.extend(_attrs(attrs or {}))
    for key, value in span_fields.items():
        if key == "status":
            span.status.CopyFrom(value)
        elif key == "events":
            span.events.extend(value)
        else:
            setattr(span, key, value)
    (out,) = normalise(req, "tenant-1")
    return out


def test_ids_times_and_names_are_normalised() -> None:
    span = _one(parent_span_id=bytes.fromhex("EEE19B7EC3C1B173"), kind=3)
    assert (span.tenant_id, span.trace_id, span.span_id) == ("tenant-1", TRACE_ID.hex(), SPAN_ID.hex())
    assert span.parent_span_id == "eee19b7ec3c1b173"
    assert (span.name, span.kind, span.service_name) == ("chat", "client", "chatbot")
    assert (span.start_time_ns, span.end_time_ns, span.duration_ns) == (START, START + 5, 5)
    assert span.source == "otlp"


def test_root_span_has_empty_parent() -> None:
    assert _one().parent_span_id == ""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (0, "unspecified"),
        (1, "internal"),
        (2, "server"),
        (3, "client"),
        (4, "producer"),
        (5, "consumer"),
        (99, "unspecified"),
    ],
)
def test_span_kind_names(kind: int, expected: str) -> None:
    assert _one(kind=kind).kind == expected


@pytest.mark.parametrize(("code", "expected"), [(0, "unset"), (1, "ok"), (2, "error"), (7, "unset")])
def test_status_codes_and_message(code: int, expected: str) -> None:
    span = _one(status=trace_pb2.Status(code=code, message="rate limited"))
    assert (span.status_code, span.status_message) == (expected, "rate limited")


def test_missing_service_name_defaults_to_unknown_service() -> None:
    assert _one(resource={}).service_name == "unknown_service"


def test_attribute_flattening_of_every_anyvalue_type() -> None:
    span = _one(
        {
            "s": "text",
            "b_true": True,
            "b_false": False,
            "i": -42,
            "d": 0.1,
            "d_whole": 2.0,
            "d_big": 1e300,
            "d_nan": float("nan"),
            "raw": b"\x00\x01\xff",
            "arr": ["a", 1, True, 1.5, None, b"\x01", ["nested"]],
            "kv": {"x": 1, "y": {"z": "w"}, "f": float("inf")},
            "empty": None,
        }
    )
    a = span.attributes
    assert (a["s"], a["b_true"], a["b_false"], a["i"]) == ("text", "true", "false", "-42")
    assert (a["d"], a["d_whole"], a["d_big"], a["d_nan"]) == ("0.1", "2.0", "1e+300", "nan")
    assert a["raw"] == base64.b64encode(b"\x00\x01\xff").decode()
    assert a["arr"] == '["a",1,true,1.5,null,"AQ==",["nested"]]'
    assert orjson.loads(a["kv"]) == {"x": 1, "y": {"z": "w"}, "f": "inf"}
    assert a["empty"] == ""


def test_resource_attributes_are_flattened_too() -> None:
    span = _one(resource={"service.name": "svc", "host.cpu": 8, "k8s.labels": ["a", "b"]})
    assert span.resource_attributes == {"service.name": "svc", "host.cpu": "8", "k8s.labels": '["a","b"]'}


def test_oversized_values_are_truncated_and_marked() -> None:
    span = _one({"big": "é" * MAX_VALUE_BYTES, "arr": ["x" * MAX_VALUE_BYTES], "ok": "y" * 1000})
    for key in ("big", "arr"):
        assert span.attributes[key].endswith("…[truncated]")
        assert len(span.attributes[key].encode()) <= MAX_VALUE_BYTES
    assert span.attributes["ok"] == "y" * 1000


def test_events_become_span_events_with_flat_attributes() -> None:
    event = trace_pb2.Span.Event(time_unix_nano=START + 1, name="gen_ai.choice", attributes=_attrs({"index": 0}))
    (e,) = _one(events=[event]).events
    assert (e.time_ns, e.name, e.attributes) == (START + 1, "gen_ai.choice", {"index": "0"})


def test_genai_span_with_both_provider_name_and_system_prefers_provider_name() -> None:
    span = _one(
        {
            "gen_ai.provider.name": " OpenAI ",
            "gen_ai.system": "az.ai.openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "GPT-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 50,
            "gen_ai.usage.reasoning.output_tokens": 120,
            "gen_ai.response.finish_reasons": ["stop", "length"],
            "gen_ai.conversation.id": "conv-1",
            "user.id": "u-1",
            "gen_ai.prompt.name": "support",
            "gen_ai.prompt.version": 3,
        }
    )
    assert (span.provider, span.operation) == ("openai", "chat")
    assert (span.request_model, span.response_model, span.model) == ("GPT-4o", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06")
    assert (span.input_tokens, span.output_tokens) == (1200, 300)
    assert (span.cached_input_tokens, span.cache_write_tokens, span.reasoning_tokens) == (1000, 50, 120)
    assert span.finish_reasons == ["stop", "length"]
    assert (span.session_id, span.user_id, span.prompt_name, span.prompt_version) == ("conv-1", "u-1", "support", "3")


def test_genai_system_is_the_provider_when_provider_name_is_absent() -> None:
    assert _one({"gen_ai.system": "Anthropic"}).provider == "anthropic"


def test_deprecated_prompt_and_completion_token_names_are_used_as_fallback() -> None:
    span = _one({"gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 4})
    assert (span.input_tokens, span.output_tokens) == (10, 4)


def test_current_token_names_win_over_deprecated_ones() -> None:
    span = _one({"gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.input_tokens": 12})
    assert span.input_tokens == 12


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7, 7),
        (7.9, 7),
        ("12", 12),
        (" 12 ", 12),
        ("1e3", 1000),
        ("12.5", 12),
        (0, 0),
        ("0", 0),
        (2**32 - 1, 2**32 - 1),
        (-3, None),
        ("-3", None),
        ("lots", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("9" * 5000, None),
        (2**32, None),  # above MAX_TOKENS: the ingest refuses it; from elsewhere it is unknown usage
        (1e300, None),
    ],
)
def test_token_counts_accept_ints_doubles_and_numeric_strings_never_raising(raw: object, expected: int | None) -> None:
    span = _one({"gen_ai.usage.input_tokens": raw})
    assert (span.input_tokens, span.usage_reported) == (expected or 0, expected is not None)


def test_openinference_span_fields() -> None:
    span = _one(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-sonnet-4",
            "llm.provider": "Anthropic",
            "llm.system": "anthropic-system",
            "llm.token_count.prompt": 900,
            "llm.token_count.completion": 80,
            "llm.token_count.prompt_details.cache_read": 500,
            "llm.token_count.prompt_details.cache_write": 100,
            "llm.token_count.completion_details.reasoning": 20,
            "session.id": "sess-9",
            "user.id": "user-9",
            "llm.prompt_template.name": "triage",
            "llm.prompt_template.version": "v2",
        }
    )
    assert (span.operation, span.provider) == ("llm", "anthropic")
    assert (span.request_model, span.response_model) == ("claude-sonnet-4", "claude-sonnet-4")
    assert (span.input_tokens, span.output_tokens) == (900, 80)
    assert (span.cached_input_tokens, span.cache_write_tokens, span.reasoning_tokens) == (500, 100, 20)
    assert (span.session_id, span.user_id) == ("sess-9", "user-9")
    assert (span.prompt_name, span.prompt_version) == ("triage", "v2")


def test_openinference_llm_system_is_provider_fallback_and_chain_kind_is_operation() -> None:
    span = _one({"llm.system": "openai", "openinference.span.kind": "CHAIN"})
    assert (span.provider, span.operation) == ("openai", "chain")


def test_genai_operation_wins_over_openinference_kind() -> None:
    assert _one({"gen_ai.operation.name": "chat", "openinference.span.kind": "LLM"}).operation == "chat"


def test_enduser_id_is_the_user_fallback_and_llmscope_keys_are_accepted() -> None:
    assert _one({"enduser.id": "e-1"}).user_id == "e-1"
    span = _one(
        {
            "llmscope.session_id": "s-2",
            "llmscope.user_id": "u-2",
            "llmscope.prompt.name": "p",
            "llmscope.prompt.version": "1",
        }
    )
    assert (span.session_id, span.user_id, span.prompt_name, span.prompt_version) == ("s-2", "u-2", "p", "1")


def test_finish_reasons_sent_as_a_json_string_or_plain_string() -> None:
    assert _one({"gen_ai.response.finish_reasons": '["stop"]'}).finish_reasons == ["stop"]
    assert _one({"gen_ai.response.finish_reasons": "stop"}).finish_reasons == ["stop"]


def test_plain_span_has_no_llm_fields() -> None:
    span = _one({"http.method": "GET"})
    assert (span.provider, span.operation, span.model, span.input_tokens, span.finish_reasons) == ("", "", "", 0, [])
    assert not span.usage_reported


def test_spans_keep_their_own_resource_and_order() -> None:
    req = ExportTraceServiceRequest()
    for service in ("a", "b"):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(_attrs({"service.name": service}))
        for name in ("x", "y"):
            rs.scope_spans.add().spans.add(trace_id=TRACE_ID, span_id=SPAN_ID, name=name, start_time_unix_nano=START)
    spans = normalise(req, "t")
    assert [(s.service_name, s.name) for s in spans] == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    spans[0].resource_attributes["mutated"] = "yes"
    assert "mutated" not in spans[1].resource_attributes


def test_deeply_nested_attribute_value_does_not_raise() -> None:
    req = ExportTraceServiceRequest()
    span = (
        req.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=TRACE_ID, span_id=SPAN_ID, start_time_unix_nano=START)
    )
    value = span.attributes.add(key="deep").value
    for i in range(2000):  # built in place: deeper than any decoder would allow
        value = value.array_value.values.add() if i % 2 else value.kvlist_value.values.add(key="k").value
    value.string_value = "leaf"
    (out,) = normalise(req, "t")
    assert out.attributes["deep"].startswith('{"k":[{"k":[')


def test_row_is_json_serialisable() -> None:
    span = _one({"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 5})
    assert orjson.loads(orjson.dumps(span.to_row(START)))["input_tokens"] == 5
