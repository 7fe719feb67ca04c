"""Per-span validation of decoded OTLP requests, and splitting them into size-bounded chunks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

_NS_PER_DAY = 86_400 * 1_000_000_000
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_REASONS = 5
_MAX_ERROR_MESSAGE = 1024


@dataclass
class Validated:
    request: ExportTraceServiceRequest  # accepted spans only; empty scope/resource entries dropped
    accepted: int
    rejected: int
    error_message: str


def validate_spans(
    req: ExportTraceServiceRequest,
    *,
    now_ns: int,
    max_future_ns: int = _NS_PER_DAY,
    max_past_ns: int = 30 * _NS_PER_DAY,
) -> Validated:
    """Split spans into accepted and rejected; `req` is returned as-is when nothing is dropped."""
    earliest, latest = now_ns - max_past_ns, now_ns + max_future_ns
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
    rejected = sum(reasons.values())
    request = _rebuild(req, verdicts) if prunable else req
    return Validated(request, accepted, rejected, _summarise(reasons, accepted + rejected))


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
    start = span.start_time_unix_nano
    if start == 0:
        return "missing start_time_unix_nano"
    if span.end_time_unix_nano < start:
        return "end before start"
    if start > latest:
        return too_late
    if start < earliest:
        return too_early
    return None


def _duration(ns: int) -> str:
    for unit, size in (("day", _NS_PER_DAY), ("hour", 3_600 * 10**9), ("minute", 60 * 10**9), ("second", 10**9)):
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


def split_request(req: ExportTraceServiceRequest, max_bytes: int) -> list[bytes]:
    """Serialized requests of at most `max_bytes` each (a lone oversized span gets its own chunk).

    Chunks are assembled from wire-format pieces rather than new messages: a message's encoding
    is the concatenation of its fields, so each span is serialized exactly once.
    """
    whole = req.SerializeToString()
    if len(whole) <= max_bytes:
        return [whole] if whole else []
    builder = _ChunkBuilder(max_bytes)
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

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
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
        if self.spans and self._size_with(rs, ss, span_field) > self.max_bytes:
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
