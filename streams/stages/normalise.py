"""OTLP spans -> the shared Span model: flat attributes plus the GenAI fields, read from the OTel GenAI,
OpenLLMetry and OpenInference conventions (README: "Which attribute feeds which field"). Pure."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from schemas.operations import canonical_operation
from schemas.span import MAX_VALUE_BYTES, TRUNCATED_MARK, Span, SpanEvent, SpanKind, StatusCode, cap_text
from schemas.usage import (
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    INPUT_TOKENS,
    MAX_TOKENS,
    OUTPUT_TOKENS,
    REASONING_TOKENS,
    TOKEN_COUNT_KEYS,
    token_count,
)

_SHORT_CHARS = MAX_VALUE_BYTES // 4  # at most 4 UTF-8 bytes a character: no need to encode to know
_MAX_NESTING = 32  # protobuf decoding allows ~47 levels; beyond this nobody is reading it anyway

_KINDS: tuple[SpanKind, ...] = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUSES: tuple[StatusCode, ...] = ("unset", "ok", "error")

# Lookup keys per field in precedence order: the OTel GenAI conventions first (newest name first, then
# deprecated ones), then OpenLLMetry's and OpenInference's names, our own SDK's last. The token keys
# live in schemas/usage.py, which the ingest shares. README.md ("Which attribute feeds which field") is this
# table with the instrumentations that emit each name; tests/streams/test_conventions.py has a span
# per row, shaped as that instrumentation emits it.
_PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_REQUEST_MODEL = ("gen_ai.request.model", "llm.model_name", "embedding.model_name")
_RESPONSE_MODEL = ("gen_ai.response.model", "llm.model_name", "embedding.model_name")
_OPERATION = ("gen_ai.operation.name", "llm.request.type", "openinference.span.kind")
_SESSION = (
    "gen_ai.conversation.id",
    "session.id",
    "traceloop.association.properties.session_id",
    "llmscope.session_id",
)
_USER = ("user.id", "enduser.id", "traceloop.association.properties.user_id", "llm.user", "llmscope.user_id")
_PROMPT_NAME = ("gen_ai.prompt.name", "traceloop.prompt.key", "llm.prompt_template.name", "llmscope.prompt.name")
_PROMPT_VERSION = (
    "gen_ai.prompt.version",
    "traceloop.prompt.version",
    "llm.prompt_template.version",
    "llmscope.prompt.version",
)
_FINISH_REASONS = "gen_ai.response.finish_reasons"

_RAW_KEYS = frozenset(
    (
        *_PROVIDER,
        *_REQUEST_MODEL,
        *_RESPONSE_MODEL,
        *_OPERATION,
        *TOKEN_COUNT_KEYS,
        *_SESSION,
        *_USER,
        *_PROMPT_NAME,
        *_PROMPT_VERSION,
        _FINISH_REASONS,
    )
)


def normalise(req: ExportTraceServiceRequest, tenant_id: str) -> list[Span]:
    """One Span per OTLP span; never raises on a request the validator accepted."""
    spans: list[Span] = []
    for rs in req.resource_spans:
        resource_attrs, _ = _flatten_attributes(rs.resource.attributes)
        service_name = resource_attrs.get("service.name") or "unknown_service"
        # A user or session set for the whole process (resource attributes) holds for its spans that name none.
        resource_user, resource_session = _first_string(resource_attrs, _USER), _first_string(resource_attrs, _SESSION)
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
                out.user_id, out.session_id = out.user_id or resource_user, out.session_id or resource_session
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
    out.operation = canonical_operation(_first_string(flat, _OPERATION))
    _apply_usage(out, raw)
    out.session_id = _first_string(flat, _SESSION)
    out.user_id = _first_string(flat, _USER)
    out.prompt_name = _first_string(flat, _PROMPT_NAME)
    out.prompt_version = _first_string(flat, _PROMPT_VERSION)
    if _FINISH_REASONS in raw:
        out.finish_reasons = _string_list(raw[_FINISH_REASONS])
    else:
        out.finish_reasons = _indexed_finish_reasons(flat)


def _apply_usage(out: Span, raw: dict[str, AnyValue]) -> None:
    """Token counts with the GenAI semconv meaning: input and output are totals that include their
    cache and reasoning parts. Usage is reported when an input or output count is present, even 0.

    Two providers mean something else by their own fields, and some instrumentations pass them on
    raw: Anthropic's `input_tokens` (and Bedrock Converse's `inputTokens`) exclude cache reads and
    writes, and Gemini's `candidates_token_count` excludes thinking tokens. A part larger than its
    total can only come from such a raw count, so the part is added to the total. A raw count that
    happens to be at least as large as its parts cannot be told apart from a total and is kept."""
    given = _first_count(raw, INPUT_TOKENS), _first_count(raw, OUTPUT_TOKENS)
    if given == (None, None):
        return
    total_in, total_out = given[0] or 0, given[1] or 0
    read = _first_count(raw, CACHE_READ_TOKENS) or 0
    written = _first_count(raw, CACHE_WRITE_TOKENS) or 0
    reasoning = _first_count(raw, REASONING_TOKENS) or 0
    if read + written > total_in:
        total_in += read + written
    if reasoning > total_out:
        total_out += reasoning
    if max(total_in, total_out) > MAX_TOKENS:
        return  # not a plausible count (the ingest refuses these): unknown usage, not poisoned sums
    out.usage_reported = True
    out.input_tokens, out.output_tokens = total_in, total_out
    out.cached_input_tokens, out.cache_write_tokens, out.reasoning_tokens = read, written, reasoning


def _first_string(flat: dict[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        if value := flat.get(key):
            return value
    return ""


def _first_count(raw: dict[str, AnyValue], keys: tuple[str, ...]) -> int | None:
    """The first key that states a count; None when none does (absent, or not a number)."""
    for key in keys:
        if key in raw and (count := token_count(raw[key])) is not None:
            return count
    return None


def _indexed_finish_reasons(flat: dict[str, str]) -> list[str]:
    """OpenLLMetry's per-choice `gen_ai.completion.<i>.finish_reason`, in choice order."""
    found = []
    for key, value in flat.items():
        if key.startswith("gen_ai.completion.") and key.endswith(".finish_reason") and value:
            index = key[len("gen_ai.completion.") : -len(".finish_reason")]
            if index.isdigit():
                found.append((int(index), value))
    return [value for _, value in sorted(found)]


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
