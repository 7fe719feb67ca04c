"""Hypothesis-made Kafka messages (random headers and values, half-valid OTLP, hand-made event
arrays) through the worker's CPU stage: a bad message is MalformedMessage, parked with its
reason; and whatever the stage accepts, the store accepts too, because an INSERT that always
fails is retried forever and stops the partition just like a crash would."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmscope.storage import Store
from schemas import span_columns
from schemas.messages import (
    FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS, HEADER_FORMAT, HEADER_RECEIVED_AT, HEADER_TENANT, MalformedMessage,
    ingest_message_from,
)
from schemas.tenant_settings import PiiPolicy
from streams.stages.decode import spans_from_message
from streams.stages.enrich import TenantPolicies
from streams.stages.pipeline import RawMessage, prepare
from tests.otlp_factory import request_of

FUZZ = hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
POLICIES = TenantPolicies(default_pii=PiiPolicy.MASK, hash_secret=b"fuzz", pii={"t-hash": PiiPolicy.HASH, "t-drop": PiiPolicy.DROP})
NOW_NS = time.time_ns()

u64 = st.integers(0, 2**64 - 1)
near_now = st.integers(NOW_NS - 3600 * 10**9, NOW_NS)
any_value = st.recursive(
    st.builds(AnyValue, string_value=st.text(max_size=40))
    | st.builds(AnyValue, int_value=st.integers(-(2**63), 2**63 - 1))
    | st.builds(AnyValue, double_value=st.floats())
    | st.builds(AnyValue, bool_value=st.booleans())
    | st.builds(AnyValue, bytes_value=st.binary(max_size=20)),
    lambda inner: st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3))
    | st.builds(lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)), st.lists(st.builds(KeyValue, key=st.text(max_size=10), value=inner), max_size=3)),
    max_leaves=8,
)
genai_keys = st.sampled_from([
    "gen_ai.request.model", "gen_ai.response.model", "gen_ai.provider.name", "gen_ai.system", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "llm.model_name", "llm.token_count.prompt", "session.id", "user.id", "gen_ai.prompt",
])
attributes = st.lists(st.builds(KeyValue, key=st.one_of(genai_keys, st.text(max_size=20)), value=any_value), max_size=6)


@st.composite
def otlp_spans(draw: st.DrawFn, sane_times: bool) -> Span:
    start = draw(near_now if sane_times else u64)
    return Span(
        trace_id=draw(st.binary(min_size=16, max_size=16) | st.binary(max_size=20)),
        span_id=draw(st.binary(min_size=8, max_size=8) | st.binary(max_size=12)),
        parent_span_id=draw(st.binary(max_size=8)),
        name=draw(st.text(max_size=30)),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=start,
        end_time_unix_nano=draw(st.integers(start, min(start + 10**12, 2**64 - 1)) if sane_times else u64),
        attributes=draw(attributes),
        status=Status(code=draw(st.integers(0, 2)), message=draw(st.text(max_size=20))),
    )


def otlp_values(sane_times: bool) -> st.SearchStrategy[bytes]:
    return st.lists(otlp_spans(sane_times), min_size=1, max_size=4).map(lambda spans: request_of(spans).SerializeToString())


json_any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
event_items = st.dictionaries(
    st.sampled_from(["id", "timestamp", "model", "provider", "input_tokens", "trace_id", "span_id", "input", "latency_ms", "status"]),
    json_any,
    max_size=6,
).map(lambda changes: {"id": uuid.uuid4().hex, "timestamp": NOW_NS, **changes})
values = st.one_of(
    st.none(),
    st.binary(max_size=300),
    otlp_values(sane_times=False),
    otlp_values(sane_times=False).flatmap(lambda v: st.integers(0, len(v)).map(lambda cut: v[:cut])),  # truncated
    st.lists(json_any, max_size=4).map(lambda items: json.dumps(items).encode()),
    st.lists(event_items, min_size=1, max_size=3).map(lambda items: json.dumps(items).encode()),
)
header_value = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS, "t-hash", "t-drop", "-1", "1e9", "٣"]).map(str.encode),
    st.integers(-(2**80), 2**80).map(lambda i: str(i).encode()),
)
headers = st.lists(st.tuples(st.sampled_from([HEADER_TENANT, HEADER_FORMAT, HEADER_RECEIVED_AT, "x"]), header_value), max_size=5)
raws = st.builds(lambda v, h: RawMessage("fuzz", 0, 0, v, h), values, headers)


@st.composite
def plausible_raws(draw: st.DrawFn, sane_times: bool = True, stamped: bool | None = None) -> RawMessage:
    """Well-formed headers, the rest random: what an older producer, a producer bug or a
    hand-written message might put on the topic, and what the stage will then try to store."""
    fmt, value = draw(st.sampled_from([
        (FORMAT_OTLP_TRACES, otlp_values(sane_times)),
        (FORMAT_SDK_EVENTS, st.lists(event_items, min_size=1, max_size=3).map(lambda items: json.dumps(items).encode())),
    ]))
    hs = [(HEADER_TENANT, draw(st.sampled_from(["t", "t-hash", "t-drop"])).encode()), (HEADER_FORMAT, fmt.encode())]
    if stamped or (stamped is None and draw(st.booleans())):  # or a producer that does not stamp arrival
        hs.append((HEADER_RECEIVED_AT, str(draw(near_now)).encode()))
    return RawMessage("fuzz", 0, draw(st.integers(0, 2**40)), draw(value), hs)


@FUZZ
@given(raw=raws)
def test_a_message_either_decodes_or_raises_malformed_message(raw: RawMessage) -> None:
    try:
        spans_from_message(ingest_message_from(raw.value, raw.headers))
    except MalformedMessage:
        pass  # → dead-letter topic with the reason


@FUZZ
@given(batch=st.lists(raws, min_size=1, max_size=4))
def test_the_cpu_stage_parks_bad_messages_and_never_hits_an_internal_error(batch: list[RawMessage]) -> None:
    prepared = prepare(batch, POLICIES)
    internal = [d.reason for d in prepared.dead if d.reason.startswith("internal error")]
    assert not internal, internal


@pytest.fixture(scope="module")
def scratch_tables(store: Store) -> Iterator[tuple[str, str]]:
    db, tag = store.database, uuid.uuid4().hex[:8]
    spans, marks = f"{db}.fuzz_spans_{tag}", f"{db}.fuzz_rollup_dirty_{tag}"
    store.command(f"CREATE TABLE {spans} AS {db}.spans")
    store.command(f"CREATE TABLE {marks} AS {db}.rollup_dirty")
    yield spans, marks
    store.command(f"DROP TABLE {spans}")
    store.command(f"DROP TABLE {marks}")


def _insert(store: Store, tables: tuple[str, str], raw: RawMessage) -> None:
    prepared = prepare([raw], POLICIES)
    if prepared.span_count:
        store.insert(tables[0], prepared.spans, span_columns.FORMAT)  # a StoreError here would be retried forever
        store.insert(tables[1], prepared.mark_rows(), "JSONEachRow")


@FUZZ
@given(raw=plausible_raws(sane_times=True, stamped=None))
def test_a_message_without_an_arrival_stamp_is_stored_or_parked(store: Store, scratch_tables: tuple[str, str], raw: RawMessage) -> None:
    _insert(store, scratch_tables, raw)


@FUZZ
@given(raw=plausible_raws(sane_times=False, stamped=True))
def test_spans_with_times_clickhouse_cannot_hold_are_parked_not_retried_forever(
    store: Store, scratch_tables: tuple[str, str], raw: RawMessage
) -> None:
    _insert(store, scratch_tables, raw)


@pytest.mark.parametrize("year_start_ns", [946_684_800 * 10**9, 978_307_200 * 10**9, NOW_NS])  # 2000, 2001, now
def test_an_event_the_ingest_accepts_is_stored_not_parked(year_start_ns: int) -> None:
    # The edge's bounds and the worker's bounds must agree, or an acknowledged span is dead-lettered.
    from ingest.events import encode_event_messages, parse_events

    events, rejected = parse_events(json.dumps({"id": "edge", "timestamp": year_start_ns, "model": "gpt-4o"}).encode(), 10)
    assert events and not rejected
    value = encode_event_messages(events, 900 * 1024)[0]
    headers = [(HEADER_TENANT, b"t"), (HEADER_FORMAT, FORMAT_SDK_EVENTS.encode()), (HEADER_RECEIVED_AT, str(NOW_NS).encode())]
    prepared = prepare([RawMessage("edge", 0, 0, value, headers)], POLICIES)
    assert prepared.dead == [] and prepared.span_count == 1
