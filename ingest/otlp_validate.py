"""Per-span validation of decoded OTLP requests, and splitting them into size-bounded chunks.

Validation covers everything the store needs (ids, times it can hold, a plausible duration, plausible
token counts, a size that fits one Kafka message), so a span that gets 200 is a span the worker can store.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from schemas.span import MAX_VALUE_BYTES, TRUNCATED_MARK, cap_text
from schemas.times import (
    MAX_FUTURE_NS,
    MAX_SPAN_DURATION_NS,
    MAX_STORABLE_NS,
    MIN_STORABLE_NS,
    NS_PER_DAY,
    NS_PER_SECOND,
    STORABLE_YEARS,
)
from schemas.usage import TOKEN_COUNT_KEYS, implausible_count

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_REASONS = 5
_MAX_ERROR_MESSAGE = 1024
# A reason's stable code (for metrics) by how its message starts; the messages carry the limits.
_REASON_CODES = (
    ("invalid ", "invalid_id"),
    ("missing start", "missing_start_time"),
    ("end before start", "end_before_start"),
    ("start time more than", "start_time_out_of_range"),
    ("duration over", "duration_too_long"),
    ("a time outside", "time_not_storable"),
    ("token count over", "implausible_token_count"),
    ("more than ", "too_large"),
)


@dataclass
class Validated:
    request: ExportTraceServiceRequest  # accepted spans only; empty scope/resource entries dropped
    accepted: int
    rejected: int
    error_message: str
    rejected_by: dict[str, int] = field(default_factory=dict)  # reason code -> spans


def reason_code(reason: str) -> str:
    """A rejection reason's stable code: the message names limits, the code stays fixed."""
    return next((code for prefix, code in _REASON_CODES if reason.startswith(prefix)), "other")


def validate_spans(
    req: ExportTraceServiceRequest,
    *,
    now_ns: int,
    max_past_ns: int,
    max_future_ns: int = MAX_FUTURE_NS,
    max_span_bytes: int | None = None,
) -> Validated:
    """Split spans into accepted and rejected; `req` is returned as-is when nothing is dropped.

    A span is accepted from `max_past_ns` before `now_ns` (the retention: older spans would be
    dropped by the TTL at once) to `max_future_ns` after it, within what the store can hold.

    With `max_span_bytes`, a span larger than that (one long prompt) has its attribute values cut
    to MAX_VALUE_BYTES, as the store would cut them anyway, and is rejected only if still too large:
    otherwise it could never be produced, and the exporter would retry its whole batch forever."""
    earliest, latest = max(now_ns - max_past_ns, MIN_STORABLE_NS), now_ns + max_future_ns
    too_late = f"start time more than {_duration(max_future_ns)} in the future"
    too_early = f"start time more than {_duration(max_past_ns)} in the past"
    reasons: Counter[str] = Counter()
    verdicts: list[list[list[str | None]]] = []
    accepted = 0
    prunable = False  # a rejection or an empty entry means the request must be rebuilt
    for rs in req.resource_spans:
        rs_verdicts = []
        rs_kept = 0
        for ss in rs.scope_spans:
            ss_verdicts = [_reject_reason(span, earliest, latest, too_early, too_late) for span in ss.spans]
            kept = ss_verdicts.count(None)
            if kept < len(ss_verdicts) or not kept:
                prunable = True
            rs_kept += kept
            rs_verdicts.append(ss_verdicts)
        if not rs_kept:
            prunable = True
        accepted += rs_kept
        verdicts.append(rs_verdicts)
        for ss_verdicts in rs_verdicts:
            reasons.update(r for r in ss_verdicts if r is not None)
    cut = 0
    if max_span_bytes is not None and req.ByteSize() > max_span_bytes:
        cut, too_big = _fit(req, verdicts, max_span_bytes)
        if too_big:
            prunable = True
            accepted -= too_big
            reasons[f"more than {max_span_bytes} bytes even with attribute values cut to {MAX_VALUE_BYTES}"] += too_big
    rejected = sum(reasons.values())
    request = _rebuild(req, verdicts) if prunable else req
    message = _summarise(reasons, accepted + rejected)
    if cut:
        note = f"{cut} attribute value(s) longer than {MAX_VALUE_BYTES} bytes were cut to that size"
        message = f"{message}; {note}" if message else note
    rejected_by: Counter[str] = Counter()
    for reason, count in reasons.items():
        rejected_by[reason_code(reason)] += count
    return Validated(request, accepted, rejected, message, dict(rejected_by))


def _reject_reason(span: trace_pb2.Span, earliest: int, latest: int, too_early: str, too_late: str) -> str | None:
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return "invalid trace_id (must be 16 non-zero bytes)"
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return "invalid span_id (must be 8 non-zero bytes)"
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return "invalid parent_span_id (must be empty or 8 bytes)"
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start == 0:
        return "missing start_time_unix_nano"
    if end < start:
        return "end before start"
    if start > latest:
        return too_late
    if start < earliest:
        return too_early
    if end - start > MAX_SPAN_DURATION_NS:
        return f"duration over {_duration(MAX_SPAN_DURATION_NS)}"
    if end >= MAX_STORABLE_NS or any(not MIN_STORABLE_NS <= e.time_unix_nano < MAX_STORABLE_NS for e in span.events):
        return f"a time outside {STORABLE_YEARS} (end or event time), which the store cannot hold"
    for kv in span.attributes:  # one such count would dominate every token sum it joins
        if kv.key in TOKEN_COUNT_KEYS and (reason := implausible_count(kv.key, kv.value)):
            return reason
    return None


def _fit(req: ExportTraceServiceRequest, verdicts: list[list[list[str | None]]], max_bytes: int) -> tuple[int, int]:
    """Cut long values of spans (and their resource and scope) over `max_bytes`; mark spans that
    still do not fit as rejected in `verdicts`. A resource or scope may take half as much again, so
    one span with its resource and scope always fits in a message of 2 × max_bytes.
    Returns (values cut, spans rejected)."""
    cut = rejected = 0
    for rs, rs_verdicts in zip(req.resource_spans, verdicts, strict=True):
        cut += _cut_values(rs.resource.attributes)
        rs_too_big = rs.resource.ByteSize() > max_bytes // 2
        for ss, ss_verdicts in zip(rs.scope_spans, rs_verdicts, strict=True):
            cut += _cut_values(ss.scope.attributes)
            head_too_big = rs_too_big or ss.scope.ByteSize() > max_bytes // 2
            for i, span in enumerate(ss.spans):
                if ss_verdicts[i] is not None:
                    continue
                if not head_too_big and span.ByteSize() > max_bytes:
                    cut += _cut_span(span)
                if head_too_big or span.ByteSize() > max_bytes:
                    ss_verdicts[i] = "too large"
                    rejected += 1
    return cut, rejected


def _cut_span(span: trace_pb2.Span) -> int:
    cut = _cut_values(span.attributes)
    for event in span.events:
        cut += _cut_values(event.attributes)
    for link in span.links:
        cut += _cut_values(link.attributes)
    for holder, name in ((span, "name"), (span.status, "message")):
        text = getattr(holder, name)
        if (capped := cap_text(text)) != text:
            setattr(holder, name, capped)
            cut += 1
    return cut


def _cut_values(kvs: Iterable[KeyValue]) -> int:
    cut = 0
    for kv in kvs:
        cut += _cut_value(kv.value)
    return cut


def _cut_value(value: AnyValue) -> int:
    """Cut one value the way the store keeps it: text to MAX_VALUE_BYTES with the mark; bytes as
    the base64 text the store would keep; a nested value too large to keep whole becomes the mark."""
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
        capped = cap_text(text)
        if capped == text:
            return 0
        value.string_value = capped
        return 1
    if which == "bytes_value" and len(value.bytes_value) > MAX_VALUE_BYTES:
        value.string_value = cap_text(base64.b64encode(value.bytes_value).decode())
        return 1
    if which in ("array_value", "kvlist_value") and value.ByteSize() > MAX_VALUE_BYTES:
        value.string_value = f"{TRUNCATED_MARK} ({which.removesuffix('_value')} of {value.ByteSize()} bytes)"
        return 1
    return 0


def _duration(ns: int) -> str:
    for unit, size in (("day", NS_PER_DAY), ("hour", 3_600 * NS_PER_SECOND), ("minute", 60 * NS_PER_SECOND), ("second", NS_PER_SECOND)):
        if ns >= size and ns % size == 0:
            count = ns // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{ns} ns"


def _rebuild(req: ExportTraceServiceRequest, verdicts: list[list[list[str | None]]]) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    for rs, rs_verdicts in zip(req.resource_spans, verdicts, strict=True):
        if all(r is not None for ss_verdicts in rs_verdicts for r in ss_verdicts):
            continue
        new_rs = out.resource_spans.add()
        if rs.HasField("resource"):
            new_rs.resource.CopyFrom(rs.resource)
        new_rs.schema_url = rs.schema_url
        for ss, ss_verdicts in zip(rs.scope_spans, rs_verdicts, strict=True):
            kept = [span for span, reason in zip(ss.spans, ss_verdicts, strict=True) if reason is None]
            if kept:
                new_ss = new_rs.scope_spans.add()
                if ss.HasField("scope"):
                    new_ss.scope.CopyFrom(ss.scope)
                new_ss.schema_url = ss.schema_url
                new_ss.spans.extend(kept)
    return out


def _summarise(reasons: Counter[str], total: int) -> str:
    if not reasons:
        return ""
    parts = [f"{count} with {reason}" for reason, count in reasons.most_common(_MAX_REASONS)]
    if len(reasons) > _MAX_REASONS:
        parts.append(f"{len(reasons) - _MAX_REASONS} more reason(s)")
    message = f"rejected {sum(reasons.values())} of {total} spans: " + ", ".join(parts)
    return message[:_MAX_ERROR_MESSAGE]


def split_request(req: ExportTraceServiceRequest, max_bytes: int, max_spans: int = 2**31) -> list[bytes]:
    """Serialized requests of at most `max_bytes` and `max_spans` each (a lone oversized span would
    get its own chunk, which validation prevents).

    Chunks are assembled from wire-format pieces rather than new messages: a message's encoding
    is the concatenation of its fields, so each span is serialized exactly once.
    """
    whole = req.SerializeToString()
    if len(whole) <= max_bytes and sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans) <= max_spans:
        return [whole] if whole else []
    builder = _ChunkBuilder(max_bytes, max_spans)
    for i, rs in enumerate(req.resource_spans):
        rs_head = _header(rs, "scope_spans")
        for j, ss in enumerate(rs.scope_spans):
            ss_head = _header(ss, "spans")
            for span in ss.spans:
                builder.add((i, rs_head), (j, ss_head), _field(2, span.SerializeToString()))
    builder.flush()
    return builder.chunks


def _header(msg: trace_pb2.ResourceSpans | trace_pb2.ScopeSpans, children: str) -> bytes:
    head = type(msg)()
    head.CopyFrom(msg)
    head.ClearField(children)  # type: ignore[arg-type]  # the stubs want one literal per message type
    return head.SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); every field used here has a one-byte tag."""
    return bytes([number << 3 | 2]) + _varint(len(payload)) + payload


def _field_size(payload_size: int) -> int:
    return 1 + len(_varint(payload_size)) + payload_size


class _ChunkBuilder:
    """Greedy packing of span fields under their (index, header) resource and scope entries."""

    def __init__(self, max_bytes: int, max_spans: int) -> None:
        self.max_bytes = max_bytes
        self.max_spans = max_spans
        self.chunks: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self.done: list[bytes] = []  # closed resource_spans fields
        self.done_size = 0
        self.rs: tuple[int, bytes] | None = None
        self.rs_parts: list[bytes] = []  # header + closed scope_spans fields
        self.rs_size = 0
        self.ss: tuple[int, bytes] | None = None
        self.ss_parts: list[bytes] = []  # header + span fields
        self.ss_size = 0
        self.spans = 0

    def _size_with(self, rs: tuple[int, bytes], ss: tuple[int, bytes], span_field: bytes) -> int:
        """Exact size of the current chunk if `span_field` were added to it."""
        done, rs_size = self.done_size, self.rs_size
        if rs != self.rs:
            done += self._open_rs_size()
            rs_size, ss_size = len(rs[1]), len(ss[1])
        elif ss != self.ss:
            rs_size += _field_size(self.ss_size)
            ss_size = len(ss[1])
        else:
            ss_size = self.ss_size
        return done + _field_size(rs_size + _field_size(ss_size + len(span_field)))

    def _open_rs_size(self) -> int:
        if self.rs is None:
            return 0
        return _field_size(self.rs_size + (_field_size(self.ss_size) if self.ss is not None else 0))

    def add(self, rs: tuple[int, bytes], ss: tuple[int, bytes], span_field: bytes) -> None:
        if self.spans and (self.spans >= self.max_spans or self._size_with(rs, ss, span_field) > self.max_bytes):
            self.flush()
        if rs != self.rs:
            self._close_rs()
            self.rs, self.rs_parts, self.rs_size = rs, [rs[1]], len(rs[1])
        if ss != self.ss:
            self._close_ss()
            self.ss, self.ss_parts, self.ss_size = ss, [ss[1]], len(ss[1])
        self.ss_parts.append(span_field)
        self.ss_size += len(span_field)
        self.spans += 1

    def _close_ss(self) -> None:
        if self.ss is not None:
            self.rs_parts.append(_field(2, b"".join(self.ss_parts)))
            self.rs_size += len(self.rs_parts[-1])
            self.ss = None

    def _close_rs(self) -> None:
        self._close_ss()
        if self.rs is not None:
            self.done.append(_field(1, b"".join(self.rs_parts)))
            self.done_size += len(self.done[-1])
            self.rs = None

    def flush(self) -> None:
        self._close_rs()
        if self.spans:
            self.chunks.append(b"".join(self.done))
        self._reset()
