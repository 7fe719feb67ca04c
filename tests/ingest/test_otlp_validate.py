"""Per-span validation and size-bounded request splitting."""

from __future__ import annotations

import os
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from ingest.otlp_validate import split_request, validate_spans
from schemas.usage import MAX_TOKENS
from tests.otlp_factory import kv

NOW = 1_800_000_000_000_000_000
SECOND = 1_000_000_000
DAY = 86_400 * SECOND
RETENTION = 30 * DAY  # the settings' default retention: how far back spans are accepted


def _span(**fields: object) -> trace_pb2.Span:
    span = trace_pb2.Span(
        trace_id=os.urandom(15) + b"\x01",
        span_id=os.urandom(7) + b"\x01",
        name="op",
        start_time_unix_nano=NOW - 2 * SECOND,
        end_time_unix_nano=NOW - SECOND,
    )
    for key, value in fields.items():
        setattr(span, key, value)
    return span


def _request(*groups: list[list[trace_pb2.Span]]) -> ExportTraceServiceRequest:
    """One resource per group, one scope per inner list."""
    req = ExportTraceServiceRequest()
    for r, scopes in enumerate(groups):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        for s, spans in enumerate(scopes):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope-{r}-{s}"
            ss.spans.extend(spans)
    return req


def _span_ids(req: ExportTraceServiceRequest) -> list[bytes]:
    return [span.span_id for rs in req.resource_spans for ss in rs.scope_spans for span in ss.spans]


def test_all_valid_spans_are_accepted_and_request_returned_unchanged() -> None:
    req = _request([[_span(), _span()]], [[_span()]])
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected, result.error_message) == (3, 0, "")
    assert result.request is req


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"trace_id": b""}, "invalid trace_id"),
        ({"trace_id": b"\x01" * 15}, "invalid trace_id"),
        ({"trace_id": bytes(16)}, "invalid trace_id"),
        ({"span_id": b"\x01" * 9}, "invalid span_id"),
        ({"span_id": bytes(8)}, "invalid span_id"),
        ({"parent_span_id": b"\x01" * 4}, "invalid parent_span_id"),
        ({"start_time_unix_nano": 0}, "missing start_time_unix_nano"),
        ({"end_time_unix_nano": NOW - 3 * SECOND}, "end before start"),
        (
            {"start_time_unix_nano": NOW + 2 * DAY, "end_time_unix_nano": NOW + 3 * DAY},
            "start time more than 1 day in the future",
        ),
        ({"start_time_unix_nano": NOW - 31 * DAY}, "start time more than 30 days in the past"),
        # A 100-year span made a tenant's average latency 2.2 hours: refused at the edge, said in the answer.
        ({"start_time_unix_nano": NOW - DAY, "end_time_unix_nano": NOW - DAY + 100 * 365 * DAY}, "duration over 7 days"),
    ],
)
def test_invalid_span_is_rejected_with_a_reason(fields: dict, reason: str) -> None:
    req = _request([[_span(), _span(**fields)]])
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected) == (1, 1)
    assert result.error_message.startswith("rejected 1 of 2 spans: 1 with ")
    assert reason in result.error_message
    assert len(_span_ids(result.request)) == 1


@pytest.mark.parametrize(
    ("key", "value", "rejected"),
    [
        ("gen_ai.usage.input_tokens", 2**32, True),
        ("gen_ai.usage.output_tokens", 1e19, True),
        ("llm.token_count.prompt", "99999999999", True),  # numeric strings count as counts
        ("gen_ai.usage.cache_write.input_tokens", 2**40, True),
        ("gen_ai.usage.input_tokens", MAX_TOKENS, False),  # the bound itself is plausible
        ("gen_ai.usage.input_tokens", "lots", False),  # not a count: the normaliser ignores it
        ("gen_ai.request.max_tokens", 2**40, False),  # not a usage attribute
    ],
)
def test_span_with_an_implausible_token_count_is_rejected_with_the_attribute(
    key: str, value: object, rejected: bool
) -> None:
    span = _span()
    span.attributes.append(kv(key, value))
    result = validate_spans(_request([[_span(), span]]), now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected) == ((1, 1) if rejected else (2, 0))
    if rejected:
        assert f"1 with token count over {MAX_TOKENS} in {key}" in result.error_message


def test_empty_parent_span_id_is_a_valid_root() -> None:
    assert validate_spans(_request([[_span(parent_span_id=b"")]]), now_ns=NOW, max_past_ns=RETENTION).rejected == 0


def test_time_bounds_are_configurable() -> None:
    req = _request([[_span(start_time_unix_nano=NOW - 2 * DAY)]])
    assert validate_spans(req, now_ns=NOW, max_past_ns=DAY).rejected == 1
    req = _request([[_span(start_time_unix_nano=NOW + 10 * SECOND, end_time_unix_nano=NOW + 11 * SECOND)]])
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION, max_future_ns=SECOND)
    assert result.rejected == 1 and "more than 1 second in the future" in result.error_message


def test_error_message_counts_reasons_most_common_first() -> None:
    spans = [_span(trace_id=b""), _span(trace_id=b""), _span(start_time_unix_nano=0)] + [_span() for _ in range(7)]
    result = validate_spans(_request([spans]), now_ns=NOW, max_past_ns=RETENTION)
    assert result.error_message == (
        "rejected 3 of 10 spans: 2 with invalid trace_id (must be 16 non-zero bytes), "
        "1 with missing start_time_unix_nano"
    )


def test_error_message_stays_under_one_kib() -> None:
    spans = [_span(trace_id=b"")] * 5000 + [_span(span_id=b"")] + [_span(start_time_unix_nano=0)]
    result = validate_spans(_request([spans]), now_ns=NOW, max_past_ns=RETENTION)
    assert result.rejected == 5002 and len(result.error_message.encode()) <= 1024


def test_rejections_drop_empty_scope_and_resource_entries_and_keep_context() -> None:
    keep = _span()
    req = _request([[_span(trace_id=b"")], [keep]], [[_span(span_id=b"")]])
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected) == (1, 2)
    (rs,) = result.request.resource_spans
    (ss,) = rs.scope_spans
    assert rs.resource.attributes[0].value.string_value == "svc-0"
    assert ss.scope.name == "scope-0-1"
    assert list(ss.spans) == [keep]


def test_validation_does_not_modify_the_input_request() -> None:
    req = _request([[_span(trace_id=b""), _span()]])
    before = req.SerializeToString()
    validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert req.SerializeToString() == before


def test_empty_entries_are_dropped_even_when_every_span_is_valid() -> None:
    req = _request([[], [_span()]], [])
    result = validate_spans(req, now_ns=NOW, max_past_ns=RETENTION)
    assert result.accepted == 1 and len(result.request.resource_spans) == 1
    assert len(result.request.resource_spans[0].scope_spans) == 1


def test_empty_request_validates_to_nothing() -> None:
    result = validate_spans(ExportTraceServiceRequest(), now_ns=NOW, max_past_ns=RETENTION)
    assert (result.accepted, result.rejected, result.error_message) == (0, 0, "")


def _chunk_spans(chunks: list[bytes]) -> list[tuple[str, str, bytes]]:
    out = []
    for chunk in chunks:
        req = ExportTraceServiceRequest.FromString(chunk)
        for rs in req.resource_spans:
            service = rs.resource.attributes[0].value.string_value
            for ss in rs.scope_spans:
                out.extend((service, ss.scope.name, span.SerializeToString()) for span in ss.spans)
    return out


def _with_context(req: ExportTraceServiceRequest) -> list[tuple[str, str, bytes]]:
    return [
        (rs.resource.attributes[0].value.string_value, ss.scope.name, span.SerializeToString())
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


@pytest.mark.parametrize("max_bytes", [200, 1000, 5000, 20_000])
def test_split_keeps_every_span_once_with_its_resource_and_scope_within_max_bytes(max_bytes: int) -> None:
    req = _request(
        [[_span(name="a" * (i * 7 % 300)) for i in range(40)], [_span() for _ in range(5)]],
        [[_span(name="b" * 50) for _ in range(30)]],
        [[]],
    )
    chunks = split_request(req, max_bytes)
    assert sorted(_chunk_spans(chunks)) == sorted(_with_context(req))
    assert all(len(c) <= max_bytes or len(_chunk_spans([c])) == 1 for c in chunks)
    assert len(chunks) == 1 if req.ByteSize() <= max_bytes else len(chunks) > 1


def test_split_puts_an_oversized_span_alone_in_its_own_chunk() -> None:
    big = _span(name="x" * 5000)
    req = _request([[_span(), big, _span()]])
    chunks = split_request(req, 1000)
    assert sorted(_chunk_spans(chunks)) == sorted(_with_context(req))
    oversized = [c for c in chunks if len(c) > 1000]
    assert len(oversized) == 1
    assert len(_chunk_spans(oversized)) == 1


def test_split_of_a_fitting_request_is_its_serialization() -> None:
    req = _request([[_span() for _ in range(10)]])
    assert split_request(req, 1 << 20) == [req.SerializeToString()]


def test_split_of_an_empty_request_is_no_chunks() -> None:
    assert split_request(ExportTraceServiceRequest(), 100) == []


def test_split_of_a_512_span_request_that_fits_is_fast() -> None:
    req = _request([[_span(name="chat gpt-4o") for _ in range(512)]])
    split_request(req, 4 << 20)
    started = time.perf_counter()
    for _ in range(10):
        split_request(req, 4 << 20)
    assert (time.perf_counter() - started) / 10 < 0.001
