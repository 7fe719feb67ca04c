"""The worker's CPU stage as one pure function over plain data: raw topic messages in,
insert-ready span rows, the minutes they touch and dead letters out. Plain data in and out lets
it run in a process pool."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from schemas.messages import FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS, IngestMessage, MalformedMessage, ingest_message_from
from schemas.span import Span
from schemas.span_columns import encode
from schemas.times import STORABLE_YEARS, storable
from streams.stages.decode import single_item, spans_from_message
from streams.stages.enrich import EnrichmentPolicy, TenantPolicies, enrich
from streams.stages.inherit import FIELDS, Node, own_values, resolve


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed message, reduced to what the pure stage needs (picklable)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (item = -1) or one span/event of it (item = its index) that cannot be stored.

    `value` is what goes to the dead-letter topic: the whole message, or for one item a message of
    the same format holding that item alone, so the rest of its message is stored without it."""

    index: int  # of the message in the batch
    reason: str
    item: int = -1
    value: bytes | None = None  # None: the original message value
    tenant_id: str = ""
    message_id: str = ""
    received_at_ns: int = 0
    format: str = ""
    trace_id: str = ""
    span_id: str = ""


@dataclass(slots=True)
class PreparedBatch:
    batch_id: str = ""  # from the batch's message ids: the same messages always give the same id
    spans: bytes = b""  # the stored spans as spans-table rows, an Arrow stream (schemas/span_columns.py)
    span_count: int = 0
    minutes: set[tuple[str, int]] = field(default_factory=set)  # (tenant, minute as Unix seconds) touched
    dead: list[DeadLetter] = field(default_factory=list)
    traces: dict[str, set[str]] = field(default_factory=dict)  # tenant -> trace ids of the stored spans
    first_start_ns: int = 0  # earliest and latest start of the stored spans
    last_start_ns: int = 0

    def mark_rows(self) -> bytes:
        """rollup_dirty rows, a JSON array: which minutes the minute compactor must recompute once
        these spans are stored."""
        return orjson.dumps([{"tenant_id": t, "minute": m, "batch": self.batch_id} for t, m in sorted(self.minutes)])


_STATED_BY = tuple(columns[0] for columns in FIELDS.values())  # a field is stated when its first column is set


def _check_storable(span: Span) -> None:
    """Ingest rejects such spans; a message from another producer may still carry them, and one
    unstorable row would fail its whole INSERT on every retry."""
    times = [span.start_time_ns, span.end_time_ns, *(e.time_ns for e in span.events)]
    if not all(storable(t) for t in times):
        raise MalformedMessage(f"span {span.span_id} has a time outside {STORABLE_YEARS}, which the store cannot hold")


def _enrich(span: Span, policy: EnrichmentPolicy) -> None:
    _check_storable(span)
    # Redaction happens here, before anything is written or published.
    result = enrich(span, policy)
    span.price_source, span.model_version, span.pii_counts = result.price_source, result.model_version, result.pii_counts


def _inherit_within(spans: list[Span]) -> None:
    """Each span takes what it does not state from its ancestors in the same batch (most traces
    arrive whole); ancestors stored before or after are the worker's to settle (streams/inheritance.py)."""
    traces: dict[tuple[str, str], list[Span]] = {}
    for span in spans:
        traces.setdefault((span.tenant_id, span.trace_id), []).append(span)
    for members in traces.values():
        if len(members) < 2:
            continue
        if not _may_inherit(members):  # what resolving would find: every span keeps its own values
            for span in members:
                span.inherited = []
            continue
        resolved = resolve(Node(s.span_id, s.parent_span_id, own_values(_columns(s))) for s in members)
        for span in members:
            found = resolved[span.span_id]
            span.user_id, span.session_id = found.values["user_id"], found.values["session_id"]
            span.prompt_name, span.prompt_version = found.values["prompt_name"], found.values["prompt_version"]
            span.inherited = list(found.inherited)


def _may_inherit(members: list[Span]) -> bool:
    """Whether a span of the trace can take a field from another: one with a parent lacks a field
    that some span states. Most traces either state a field on every span (context propagation)
    or nowhere (no prompt), and resolving those costs more than the rest of enrichment."""
    for column in _STATED_BY:
        if any(getattr(s, column) for s in members) and any(s.parent_span_id and not getattr(s, column) for s in members):
            return True
    return False


def _columns(span: Span) -> dict[str, str]:
    return {"user_id": span.user_id, "session_id": span.session_id,
            "prompt_name": span.prompt_name, "prompt_version": span.prompt_version}


def _message_id(raw: RawMessage) -> str:
    try:
        return ingest_message_from(raw.value, raw.headers).message_id
    except MalformedMessage:
        return hashlib.sha256(raw.value or b"").hexdigest()[:32]


def batch_id(message_ids: list[str]) -> str:
    return hashlib.sha256(",".join(sorted(message_ids)).encode()).hexdigest()[:32]


def prepare(messages: list[RawMessage], policies: TenantPolicies) -> PreparedBatch:
    """Never raises for bad input: a message that cannot be decoded is parked whole, a span that
    cannot be stored is parked alone, so neither a poison message stops its partition nor a bad
    span loses its neighbours."""
    stored: list[tuple[Span, IngestMessage]] = []
    batch = PreparedBatch()
    ids: list[str] = []
    # One tenant's policy once per batch: building it (a keyed hash, the price overrides' index)
    # cost as much as enriching a span.
    tenant_policy: dict[str, EnrichmentPolicy] = {}
    for index, raw in enumerate(messages):
        try:
            message = ingest_message_from(raw.value, raw.headers)
            spans = spans_from_message(message)
            policy = tenant_policy.get(message.tenant_id)
            if policy is None:
                policy = tenant_policy[message.tenant_id] = policies.for_tenant(message.tenant_id)
        except MalformedMessage as exc:
            batch.dead.append(DeadLetter(index, str(exc)))
            ids.append(_message_id(raw))
            continue
        except Exception as exc:  # a bug must cost one message, not the partition
            batch.dead.append(DeadLetter(index, f"internal error: {exc!r}"[:1000]))
            ids.append(_message_id(raw))
            continue
        ids.append(message.message_id)
        for item, span in enumerate(spans):
            try:
                _enrich(span, policy)
            except Exception as exc:
                reason = str(exc) if isinstance(exc, MalformedMessage) else f"internal error: {exc!r}"[:1000]
                batch.dead.append(_dead_item(index, item, reason, message, span))
                continue
            stored.append((span, message))
    _inherit_within([span for span, _ in stored])
    for span, message in stored:
        batch.minutes.add((message.tenant_id, span.start_time_ns // 60_000_000_000 * 60))
        batch.traces.setdefault(span.tenant_id, set()).add(span.trace_id)
    if stored:
        batch.first_start_ns = min(span.start_time_ns for span, _ in stored)
        batch.last_start_ns = max(span.start_time_ns for span, _ in stored)
    batch.span_count = len(stored)
    batch.spans = encode([span for span, _ in stored], [message.received_at_ns for _, message in stored])
    batch.batch_id = batch_id(ids)
    return batch


def _dead_item(index: int, item: int, reason: str, message: IngestMessage, span: Span) -> DeadLetter:
    value = single_item(message, item) if message.format in (FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS) else None
    return DeadLetter(
        index, reason, item, value, message.tenant_id, message.message_id, message.received_at_ns, message.format,
        span.trace_id, span.span_id,
    )
