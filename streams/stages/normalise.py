"""OTLP spans -> the shared Span model: flat attributes plus GenAI/OpenInference fields. Pure."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from schemas.span import MAX_VALUE_BYTES, TRUNCATED_MARK, Span, SpanEvent, SpanKind, StatusCode, cap_text

_SHORT_CHARS = MAX_VALUE_BYTES // 4  # at most 4 UTF-8 bytes a character: no need to encode to know
_MAX_NESTING = 32  # protobuf decoding allows ~47 levels; beyond this nobody is reading it anyway
_MAX_TOKENS = 2**63 - 1

_KINDS: tuple[SpanKind, ...] = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUSES: tuple[StatusCode, ...] = ("unset", "ok", "error")

# Lookup keys in precedence order: OTel GenAI semconv, then OpenInference, then our own SDK's.
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_REQUEST_MODEL = ("gen_ai.request.model", "llm.model_name")
_RESPONSE_MODEL = ("gen_ai.response.model", "llm.model_name")
_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "llm.token_count.prompt_details.cache_read")
_CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "llm.token_count.prompt_details.cache_write")
_REASONING = ("gen_ai.usage.reasoning.output_tokens", "llm.token_count.completion_details.reasoning")
_SESSION = ("gen_ai.conversation.id", "session.id", "llmscope.session_id")
_USER = ("user.id", "enduser.id", "llmscope.user_id")
_PROMPT_NAME = ("gen_ai.prompt.name", "llm.prompt_template.name", "llmscope.prompt.name")
_PROMPT_VERSION = ("gen_ai.prompt.version", "llm.prompt_template.version", "llmscope.prompt.version")
_FINISH_REASONS = "gen_ai.response.finish_reasons"
_OPERATION = "gen_ai.operation.name"
_OPENINFERENCE_KIND = "openinference.span.kind"

_RAW_KEYS = frozenset(
    (
        *_PROVIDER,
        *_REQUEST_MODEL,
        *_RESPONSE_MODEL,
        *_INPUT_TOKENS,
        *_OUTPUT_TOKENS,
        *_CACHE_READ,
        *_CACHE_WRITE,
        *_REASONING,
        *_SESSION,
        *_USER,
        *_PROMPT_NAME,
        *_PROMPT_VERSION,
        _FINISH_REASONS,
        _OPERATION,
        _OPENINFERENCE_KIND,
    )
)


def normalise(req: ExportTraceServiceRequest, tenant_id: str) -> list[Span]:
    """One Span per OTLP span; never raises on a request the validator accepted."""
    spans: list[Span] = []
    for rs in req.resource_spans:
        resource_attrs, _ = _flatten_attributes(rs.resource.attributes)
        service_name = resource_attrs.get("service.name") or "unknown_service"
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs, raw = _flatten_attributes(span.attributes)
                status = span.status
                out = Span(
                    tenant_id=tenant_id,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=cap_text(span.name),
                    kind=_KINDS[span.kind] if 0 <= span.kind < len(_KINDS) else "unspecified",
                    service_name=service_name,
                    start_time_ns=span.start_time_unix_nano,
                    end_time_ns=span.end_time_unix_nano,
                    status_code=_STATUSES[status.code] if 0 <= status.code < len(_STATUSES) else "unset",
                    status_message=cap_text(status.message),
                    attributes=attrs,
                    resource_attributes=dict(resource_attrs),  # spans are mutated independently later
                    events=[
                        SpanEvent(e.time_unix_nano, cap_text(e.name), _flatten_attributes(e.attributes)[0])
                        for e in span.events
                    ],
                )
                if raw:
                    _apply_llm_fields(out, raw, attrs)
                spans.append(out)
    return spans


def _flatten_attributes(kvs: Iterable[KeyValue]) -> tuple[dict[str, str], dict[str, AnyValue]]:
    """Flattened strings for storage, plus the typed values of the keys the LLM fields come from."""
    flat: dict[str, str] = {}
    raw: dict[str, AnyValue] = {}
    for kv in kvs:
        key, value = kv.key, kv.value
        # Most values are short non-empty strings (a oneof, so nothing else is set): skipping
        # WhichOneof and the general path for them is a third of normalise's time.
        text = value.string_value
        if text:
            flat[key] = text if len(text) <= _SHORT_CHARS else cap_text(text)
        else:
            flat[key] = _flatten(value)
        if key in _RAW_KEYS:
            raw[key] = value
    return flat, raw


def _flatten(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
    elif which == "int_value":
        return str(value.int_value)
    elif which == "bool_value":
        return "true" if value.bool_value else "false"
    elif which == "double_value":
        return repr(value.double_value)
    elif which == "bytes_value":
        text = base64.b64encode(value.bytes_value).decode()
    elif which is None:
        return ""
    else:
        text = orjson.dumps(_to_python(value, 0)).decode()
    return cap_text(text)


def _to_python(value: AnyValue, depth: int) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        if depth >= _MAX_NESTING:
            return TRUNCATED_MARK
        return [_to_python(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        if depth >= _MAX_NESTING:
            return TRUNCATED_MARK
        return {kv.key: _to_python(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "double_value" and not math.isfinite(value.double_value):
        return repr(value.double_value)  # JSON has no NaN/Infinity
    return getattr(value, which)


def _apply_llm_fields(out: Span, raw: dict[str, AnyValue], flat: dict[str, str]) -> None:
    out.provider = _first_string(flat, _PROVIDER).strip().lower()
    out.request_model = _first_string(flat, _REQUEST_MODEL)
    out.response_model = _first_string(flat, _RESPONSE_MODEL)
    out.operation = flat.get(_OPERATION) or flat.get(_OPENINFERENCE_KIND, "").strip().lower()
    out.input_tokens = _first_count(raw, _INPUT_TOKENS)
    out.output_tokens = _first_count(raw, _OUTPUT_TOKENS)
    out.cached_input_tokens = _first_count(raw, _CACHE_READ)
    out.cache_write_tokens = _first_count(raw, _CACHE_WRITE)
    out.reasoning_tokens = _first_count(raw, _REASONING)
    out.session_id = _first_string(flat, _SESSION)
    out.user_id = _first_string(flat, _USER)
    out.prompt_name = _first_string(flat, _PROMPT_NAME)
    out.prompt_version = _first_string(flat, _PROMPT_VERSION)
    if _FINISH_REASONS in raw:
        out.finish_reasons = _string_list(raw[_FINISH_REASONS])


def _first_string(flat: dict[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        if value := flat.get(key):
            return value
    return ""


def _first_count(raw: dict[str, AnyValue], keys: tuple[str, ...]) -> int:
    for key in keys:
        if key in raw:
            return _count(raw[key])
    return 0


def _count(value: AnyValue) -> int:
    """A token count from an int, double or numeric string; anything else or negative is 0."""
    which = value.WhichOneof("value")
    number: float | int
    if which == "int_value":
        number = value.int_value
    elif which == "double_value":
        number = value.double_value
    elif which == "string_value":
        text = value.string_value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return 0
    else:
        return 0
    if isinstance(number, float):
        if not math.isfinite(number):
            return 0
        number = int(number)
    return min(number, _MAX_TOKENS) if number > 0 else 0


def _string_list(value: AnyValue) -> list[str]:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_flatten(v) for v in value.array_value.values]
    if which == "string_value":
        text = value.string_value.strip()
        # Some instrumentations send the array JSON-encoded in a plain string attribute.
        if text.startswith("["):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
                return [cap_text(p) for p in parsed]
        return [cap_text(text)] if text else []
    return [_flatten(value)] if which else []
