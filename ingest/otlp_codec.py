"""OTLP/HTTP trace wire formats: decode requests (protobuf, OTLP JSON), encode responses and errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from pydantic import BaseModel, Field

from llmscope.errors import BadRequest, UnsupportedMediaType

_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPES = frozenset({"application/json"})

# Every JSON object is one message level, so capping JSON depth at upb's decode depth limit (100)
# guarantees whatever we accept re-parses downstream, and keeps json_format far from RecursionError.
_MAX_JSON_DEPTH = 100
# A hex id that is not valid becomes one zero byte: wrong length for every id field, so the
# validator rejects that span alone instead of the whole request failing here.
_INVALID_ID = base64.b64encode(b"\0").decode()
_SPAN_ID_FIELDS = (
    ("traceId", 16),
    ("trace_id", 16),
    ("spanId", 8),
    ("span_id", 8),
    ("parentSpanId", 8),
    ("parent_span_id", 8),
)
_LINK_ID_FIELDS = _SPAN_ID_FIELDS[:4]
_MAX_MESSAGE = 1024
_MAX_RESPONSE_MESSAGE = 4096

# HTTP status -> google.rpc.Code for Status bodies (clients must not branch on it, but be honest).
GRPC_CODE: dict[int, int] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    413: 8,  # RESOURCE_EXHAUSTED
    415: 3,  # INVALID_ARGUMENT
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 14,  # UNAVAILABLE
}


def decode_traces(body: bytes, content_type: str | None) -> ExportTraceServiceRequest:
    """Parse an OTLP/HTTP traces body; raise UnsupportedMediaType or BadRequest, nothing else."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    is_json = media_type in _JSON_TYPES
    if not is_json and media_type not in _PROTOBUF_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type or '(none)'!r}; "
            "use application/x-protobuf, application/protobuf or application/json"
        )
    if not body or body.isspace():
        return ExportTraceServiceRequest()
    return _decode_json(body) if is_json else _decode_protobuf(body)


def _decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise BadRequest(_clip(f"invalid protobuf ExportTraceServiceRequest: {e}")) from None


def _decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        doc = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError as e:
        raise BadRequest(_clip(f"invalid JSON: {e}")) from None
    if not isinstance(doc, dict):
        raise BadRequest(f"OTLP JSON body must be an object with resourceSpans, got {_type_name(doc)}")
    _check_depth(doc)
    _rewrite_ids(doc)
    req = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    # json_format lets some plain TypeError/ValueError escape for oddly typed values.
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as e:
        where = _locate_parse_error(doc) or _describe_parse_error(str(e))
        raise BadRequest(_clip(f"invalid OTLP JSON: {where}")) from None
    return req


def _check_depth(doc: Any) -> None:
    # Iterative, so a hostile document cannot exhaust the Python stack here either.
    stack: list[tuple[Any, int, tuple | None]] = [(doc, 1, None)]
    while stack:
        node, depth, where = stack.pop()
        if depth > _MAX_JSON_DEPTH:
            raise BadRequest(f"invalid OTLP JSON: {_render_path(where)}: nested deeper than {_MAX_JSON_DEPTH} levels")
        items: Iterable[tuple[Any, Any]] = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, (where, key)))


def _render_path(where: tuple | None) -> str:
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".") or "(root)"


def _rewrite_ids(doc: dict[str, Any]) -> None:
    """OTLP JSON ids are hex; json_format expects base64 for bytes fields."""
    for i, rs in enumerate(_array(doc, ("resourceSpans", "resource_spans"), "")):
        rs_path = f"resourceSpans[{i}]"
        for j, ss in enumerate(_array(_object(rs, rs_path), ("scopeSpans", "scope_spans"), rs_path)):
            ss_path = f"{rs_path}.scopeSpans[{j}]"
            for k, span in enumerate(_array(_object(ss, ss_path), ("spans",), ss_path)):
                span_path = f"{ss_path}.spans[{k}]"
                _hex_to_base64(_object(span, span_path), _SPAN_ID_FIELDS)
                for n, link in enumerate(_array(span, ("links",), span_path)):
                    _hex_to_base64(_object(link, f"{span_path}.links[{n}]"), _LINK_ID_FIELDS)


def _array(obj: dict[str, Any], keys: tuple[str, ...], path: str) -> list[Any]:
    for key in keys:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            where = f"{path}.{key}" if path else key
            raise BadRequest(f"invalid OTLP JSON: {where}: expected an array, got {_type_name(value)}")
        return value
    return []


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"invalid OTLP JSON: {path}: expected an object, got {_type_name(value)}")
    return value


def _hex_to_base64(obj: dict[str, Any], fields: tuple[tuple[str, int], ...]) -> None:
    for key, size in fields:
        value = obj.get(key)
        if value is None or value == "":
            continue
        converted = _INVALID_ID
        if isinstance(value, str) and len(value) == 2 * size:
            try:
                converted = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError:
                pass
        obj[key] = converted


def _locate_parse_error(doc: dict[str, Any]) -> str | None:
    """Re-parse piece by piece to name the JSON path of the first bad value (failure path only)."""
    top = _without(doc, "resourceSpans", "resource_spans")
    if (err := _try_parse(top, ExportTraceServiceRequest)) is not None:
        return err
    for i, rs in enumerate(_array(doc, ("resourceSpans", "resource_spans"), "")):
        rs_path = f"resourceSpans[{i}]"
        if (err := _try_parse(_without(rs, "scopeSpans", "scope_spans"), trace_pb2.ResourceSpans)) is not None:
            return f"{rs_path}.{err}"
        for j, ss in enumerate(_array(rs, ("scopeSpans", "scope_spans"), rs_path)):
            ss_path = f"{rs_path}.scopeSpans[{j}]"
            if (err := _try_parse(_without(ss, "spans"), trace_pb2.ScopeSpans)) is not None:
                return f"{ss_path}.{err}"
            for k, span in enumerate(_array(ss, ("spans",), ss_path)):
                if (err := _try_parse(span, trace_pb2.Span)) is not None:
                    return f"{ss_path}.spans[{k}].{err}"
    return None


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


def _try_parse(obj: dict[str, Any], cls: type[Message]) -> str | None:
    try:
        json_format.ParseDict(obj, cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as e:
        return _describe_parse_error(str(e))
    return None


_FIELD_PREFIX = re.compile(r"Failed to parse (\w+) field: ")
_AT_SUFFIX = re.compile(r" at [\w.\[\]]+\.*$")


def _describe_parse_error(message: str) -> str:
    """Turn json_format's 'Failed to parse a field: Failed to parse b field: why' into 'a.b: why'."""
    fields: list[str] = []
    while m := _FIELD_PREFIX.match(message):
        fields.append(m.group(1))
        message = message[m.end() :]
    reason = _AT_SUFFIX.sub("", message).rstrip(".")
    return f"{'.'.join(fields)}: {reason}" if fields else reason


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _clip(message: str, limit: int = _MAX_MESSAGE) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def encode_export_response(rejected_spans: int, error_message: str, as_json: bool) -> bytes:
    """ExportTraceServiceResponse; partial_success stays unset on full success, as OTLP requires."""
    if rejected_spans == 0 and not error_message:
        return b"{}" if as_json else b""
    error_message = _clip(error_message, _MAX_RESPONSE_MESSAGE)
    if as_json:
        return orjson.dumps({"partialSuccess": {"rejectedSpans": str(rejected_spans), "errorMessage": error_message}})
    resp = ExportTraceServiceResponse()
    resp.partial_success.rejected_spans = rejected_spans
    resp.partial_success.error_message = error_message
    return resp.SerializeToString()


class OtlpStatus(BaseModel):
    """A google.rpc.Status error body as JSON (the protobuf form carries the same two fields)."""

    code: int = Field(description="google.rpc.Code: 3 invalid argument, 7 permission denied, 8 resource exhausted, 14 unavailable, 16 unauthenticated, …")
    message: str


def encode_status(code: int, message: str, as_json: bool) -> bytes:
    """A google.rpc.Status error body in the request's encoding."""
    message = _clip(message, _MAX_RESPONSE_MESSAGE)
    if as_json:
        return orjson.dumps({"code": code, "message": message})
    return status_pb2.Status(code=code, message=message).SerializeToString()
