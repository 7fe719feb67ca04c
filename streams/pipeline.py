"""The worker's CPU stage as one pure function over plain data: raw topic messages in,
insert-ready span and rollup rows and dead letters out. Plain data in and out lets it run in
a process pool."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from schemas.messages import MAX_STORABLE_NS, MIN_STORABLE_NS, MalformedMessage, ingest_message_from
from schemas.span import Span
from streams.decode import spans_from_message
from streams.enrich import enrich
from streams.policies import TenantPolicies
from streams.rollup import rollup_rows
from streams.sink import SourceOffset


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed message, reduced to what the pure stage needs (picklable)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class PreparedBatch:
    span_rows: bytes = b"[]"  # JSON arrays of table rows
    span_count: int = 0
    rollup_rows: bytes = b"[]"
    rollup_count: int = 0
    dead: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)


def _enriched(raw: RawMessage, policies: TenantPolicies) -> tuple[list[Span], int]:
    message = ingest_message_from(raw.value, raw.headers)
    spans = spans_from_message(message)
    policy = policies.for_tenant(message.tenant_id)
    for span in spans:
        _check_storable(span)
        # Redaction happens here, before anything is written or published.
        result = enrich(span, policy)
        span.price_source, span.model_version, span.pii_counts = result.price_source, result.model_version, result.pii_counts
    return spans, message.received_at_ns


def _check_storable(span: Span) -> None:
    """Ingest rejects such spans; a message from another producer may still carry them, and one
    unstorable row would fail its whole INSERT on every retry."""
    times = [span.start_time_ns, span.end_time_ns, *(e.time_ns for e in span.events)]
    if not all(MIN_STORABLE_NS <= t < MAX_STORABLE_NS for t in times):
        raise MalformedMessage(f"span {span.span_id} has a time outside 1973..2262, which the store cannot hold")


def prepare(messages: list[RawMessage], policies: TenantPolicies) -> PreparedBatch:
    """Never raises for a bad message: whatever one message does wrong parks that message only,
    so a poison message can't stop its partition."""
    spans_json: list[bytes] = []
    rollups_json: list[bytes] = []
    batch = PreparedBatch()
    for index, raw in enumerate(messages):
        try:
            spans, received_at = _enriched(raw, policies)
            rows = [span.to_row(received_at) for span in spans]
            rollups = rollup_rows(spans, SourceOffset(raw.topic, raw.partition, raw.offset))
            encoded = (orjson.dumps(rows)[1:-1], orjson.dumps(rollups)[1:-1])  # items, without brackets
        except MalformedMessage as exc:
            batch.dead.append((index, str(exc)))
            continue
        except Exception as exc:  # a bug must cost one message, not the partition
            batch.dead.append((index, f"internal error: {exc!r}"[:1000]))
            continue
        if rows:
            spans_json.append(encoded[0])
            rollups_json.append(encoded[1])
        batch.span_count += len(rows)
        batch.rollup_count += len(rollups)
    batch.span_rows = b"[" + b",".join(spans_json) + b"]"
    batch.rollup_rows = b"[" + b",".join(rollups_json) + b"]"
    return batch
