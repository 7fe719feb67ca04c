"""The worker's CPU stage, pure: an unstorable span is parked alone, batch ids come from message ids."""

from __future__ import annotations

import time

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas import span_columns
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage
from schemas.tenant_settings import PiiPolicy
from streams.stages.enrich import TenantPolicies
from streams.stages.pipeline import RawMessage, prepare
from tests.otlp_factory import llm_span, request_of

POLICIES = TenantPolicies(PiiPolicy.OFF, b"secret")


def _raw(spans: list, offset: int = 0, message_id: str | None = None) -> RawMessage:
    message = IngestMessage("pipe", FORMAT_OTLP_TRACES, time.time_ns(), request_of(spans).SerializeToString())
    if message_id:
        message = IngestMessage(message.tenant_id, message.format, message.received_at_ns, message.value, message_id)
    return RawMessage("t", 0, offset, message.value, message.headers())


def test_a_span_the_store_cannot_hold_is_parked_alone_and_its_neighbours_are_stored() -> None:
    good = [llm_span() for _ in range(3)]
    bad = llm_span()
    bad.end_time_unix_nano = 2**63 + 5  # past 2262: the store would refuse the whole INSERT
    raw = _raw([good[0], bad, *good[1:]])
    prepared = prepare([raw], POLICIES)
    assert prepared.span_count == 3
    assert {r["span_id"] for r in span_columns.rows(prepared.spans)} == {s.span_id.hex() for s in good}
    (dead,) = prepared.dead
    assert dead.item == 1 and dead.span_id == bad.span_id.hex() and "1973..2262" in dead.reason
    parked = ExportTraceServiceRequest.FromString(dead.value or b"")
    (only,) = [s for rs in parked.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert only == bad  # the span itself, with its resource, ready to be repaired and replayed
    assert parked.resource_spans[0].resource.attributes[0].value.string_value == "test-service"
    assert {(t, m) for t, m in prepared.minutes} == {("pipe", s.start_time_unix_nano // 60_000_000_000 * 60) for s in good}


def test_batch_ids_come_from_message_ids_never_from_offsets() -> None:
    spans = [llm_span()]
    first = prepare([_raw(spans, 0, "a" * 32), _raw(spans, 1, "b" * 32)], POLICIES)
    # The same messages at other offsets (a restarted broker hands offsets out again) keep the id...
    again = prepare([_raw(spans, 7, "b" * 32), _raw(spans, 9, "a" * 32)], POLICIES)
    assert first.batch_id == again.batch_id
    # ...and other messages at the same offsets get another one.
    other = prepare([_raw(spans, 0, "c" * 32), _raw(spans, 1, "d" * 32)], POLICIES)
    assert other.batch_id != first.batch_id


def test_marks_name_each_touched_minute_once_with_the_batch_id() -> None:
    start = (int(time.time()) // 60 * 60 - 120) * 10**9
    spans = [llm_span(start_ns=start + i * 10**9) for i in range(3)] + [llm_span(start_ns=start + 61 * 10**9)]
    prepared = prepare([_raw(spans)], POLICIES)
    marks = orjson.loads(prepared.mark_rows())
    assert marks == [{"tenant_id": "pipe", "minute": start // 10**9 + m, "batch": prepared.batch_id} for m in (0, 60)]
