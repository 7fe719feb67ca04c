"""Spans-table rows as Arrow columns: how the worker's CPU stage hands a batch of spans to the store.

Why columns and not JSON rows: ClickHouse reads an Arrow stream column by column at about half the
CPU of parsing the same rows as JSONEachRow (≈ 7 against ≈ 14 µs per span of ≈ 2 KB, on the
process that holds the store), and building the columns costs the CPU stage what encoding JSON did
(`bench/stage_profile.py`). The columns carry what `Span.to_row` says, value for value, with the
one conversion the store would make anyway: a cost finer than the column's 12 decimals is cut
towards zero, as ClickHouse cuts a decimal text (`rows` reads a stream back as `to_row` dicts;
tests/schemas/test_span_columns.py holds both to the spans table)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from decimal import ROUND_DOWN, Context, Decimal
from itertools import accumulate
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.span import Span, ns_to_ch

_TIME = pa.timestamp("ns", tz="UTC")
_COST = pa.decimal128(38, 12)
_COST_STEP = Decimal(1).scaleb(-12)
_COST_CONTEXT = Context(prec=38, rounding=ROUND_DOWN)  # the default 28 digits cannot hold a large cost's 12 decimals


def _map(value: pa.DataType) -> pa.MapType:
    return pa.map_(pa.field("key", pa.string(), nullable=False), pa.field("value", value, nullable=False))


def _list(item: pa.DataType) -> pa.ListType:
    return pa.list_(pa.field("item", item, nullable=False))


_EVENT = pa.struct([pa.field("time", _TIME, nullable=False), pa.field("name", pa.string(), nullable=False),
                    pa.field("attributes", _map(pa.string()), nullable=False)])
_TEXT = ("tenant_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name")
_LABELS = ("status_code", "status_message", "operation", "provider", "request_model", "response_model")
_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
_NAMES = ("price_source", "session_id", "user_id", "prompt_name", "prompt_version")
_LISTS = ("inherited", "finish_reasons")
_MAPS = ("attributes", "pii_counts", "resource_attributes")

# The spans table (schemas/migrations) as ClickHouse reads and reports it in Arrow, in its order.
SPANS_SCHEMA = pa.schema(
    [pa.field(name, pa.string(), nullable=False) for name in _TEXT]
    + [pa.field("start_time", _TIME, nullable=False), pa.field("end_time", _TIME, nullable=False),
       pa.field("duration_ns", pa.uint64(), nullable=False)]
    + [pa.field(name, pa.string(), nullable=False) for name in (*_LABELS, "model", "model_version")]
    + [pa.field(name, pa.uint64(), nullable=False) for name in _COUNTS]
    + [pa.field("usage_reported", pa.uint8(), nullable=False), pa.field("cost_usd", _COST)]
    + [pa.field(name, pa.string(), nullable=False) for name in _NAMES]
    + [pa.field(name, _list(pa.string()), nullable=False) for name in _LISTS]
    + [pa.field("attributes", _map(pa.string()), nullable=False),
       pa.field("pii_counts", _map(pa.uint32()), nullable=False),
       pa.field("resource_attributes", _map(pa.string()), nullable=False),
       pa.field("events", _list(_EVENT), nullable=False),
       pa.field("source", pa.string(), nullable=False), pa.field("ingested_at", _TIME, nullable=False)]
)
FORMAT = "ArrowStream"  # the ClickHouse input format of what `encode` returns
_CHUNK = 1000  # spans per record batch
_STRINGS = (*_TEXT, *_LABELS, "model_version", *_NAMES, "source")  # read straight off the span, as text
_PLAIN = (*_STRINGS, "start_time_ns", "end_time_ns", *_COUNTS)


def encode(spans: Sequence[Span], ingested_at_ns: Sequence[int]) -> bytes:
    """The spans as rows of the spans table (`ingested_at_ns` per span): one Arrow IPC stream."""
    out = io.BytesIO()  # getvalue() hands its buffer over: a batch is tens of MB, copied once less
    with pa.ipc.new_stream(out, SPANS_SCHEMA) as writer:
        # A record batch per chunk keeps the columns' memory to one chunk's: the allocator keeps
        # what a batch of 20,000 spans took at once (≈ 100 MB more resident in the CPU stage).
        for i in range(0, len(spans), _CHUNK):
            writer.write_batch(_record_batch(spans[i : i + _CHUNK], ingested_at_ns[i : i + _CHUNK]))
    return out.getvalue()


def _record_batch(spans: Sequence[Span], ingested_at_ns: Sequence[int]) -> pa.RecordBatch:
    columns: dict[str, pa.Array] = {}
    # One attribute tuple per span for the plain columns, then transposed: cheaper than a pass per column.
    values = dict(zip(_PLAIN, zip(*map(attrgetter(*_PLAIN), spans)))) if spans else dict.fromkeys(_PLAIN, ())
    for name in _STRINGS:
        columns[name] = pa.array(values[name], pa.string())
    for name in _COUNTS:
        columns[name] = pa.array(values[name], pa.uint64())
    start, end = pa.array(values["start_time_ns"], pa.int64()), pa.array(values["end_time_ns"], pa.int64())
    columns["start_time"], columns["end_time"] = start.cast(_TIME), end.cast(_TIME)
    columns["ingested_at"] = _times(ingested_at_ns)
    # Span.duration_ns (never negative), on the columns
    columns["duration_ns"] = pc.max_element_wise(pc.subtract(end, start), 0).cast(pa.uint64())
    columns["model"] = pa.array([s.model for s in spans], pa.string())
    columns["usage_reported"] = pa.array([s.has_usage for s in spans], pa.bool_()).cast(pa.uint8())
    columns["cost_usd"] = pa.array(
        [None if s.cost_usd is None else s.cost_usd.quantize(_COST_STEP, context=_COST_CONTEXT) for s in spans], _COST)
    for name in _LISTS:
        columns[name] = _lists([getattr(s, name) for s in spans], SPANS_SCHEMA.field(name).type)
    for name in _MAPS:
        columns[name] = _maps([getattr(s, name) for s in spans], SPANS_SCHEMA.field(name).type)
    columns["events"] = _events(spans)
    return pa.RecordBatch.from_arrays([columns[name] for name in SPANS_SCHEMA.names], schema=SPANS_SCHEMA)


def _times(ns: Sequence[int]) -> pa.Array:
    return pa.array(ns, pa.int64()).cast(_TIME)


def _offsets(sizes: Iterable[int]) -> pa.Array:
    return pa.array([0, *accumulate(sizes)], pa.int32())


def _lists(lists: Sequence[list[str]], kind: pa.ListType) -> pa.Array:
    items = [item for each in lists for item in each]
    return pa.ListArray.from_arrays(_offsets(map(len, lists)), pa.array(items, kind.value_type), type=kind)


def _maps(maps: Sequence[dict[str, Any]], kind: pa.MapType) -> pa.Array:
    keys: list[str] = []
    values: list[Any] = []
    for each in maps:
        keys.extend(each)
        values.extend(each.values())
    return pa.MapArray.from_arrays(
        _offsets(map(len, maps)), pa.array(keys, pa.string()), pa.array(values, kind.item_type), type=kind)


def _events(spans: Sequence[Span]) -> pa.Array:
    events = [e for s in spans for e in s.events]
    kind = SPANS_SCHEMA.field("events").type
    fields = pa.StructArray.from_arrays(
        [_times([e.time_ns for e in events]), pa.array([e.name for e in events], pa.string()),
         _maps([e.attributes for e in events], _EVENT.field("attributes").type)],
        fields=list(_EVENT))
    return pa.ListArray.from_arrays(_offsets(len(s.events) for s in spans), fields, type=kind)


def rows(data: bytes) -> list[dict[str, Any]]:
    """An `encode`d stream as spans-table rows, shaped as `Span.to_row` makes them (for the live
    stream, which is told about a batch once it is stored)."""
    table = pa.ipc.open_stream(data).read_all()
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        column = table.column(name)
        if column.type == _TIME:
            columns[name] = [ns_to_ch(v) for v in column.cast(pa.int64()).to_pylist()]
        elif name == "cost_usd":
            columns[name] = [None if v is None else format(v, "f") for v in column.to_pylist()]
        elif name in _MAPS:
            columns[name] = [dict(v) for v in column.to_pylist()]
        elif name == "events":
            plain = column.cast(_list(pa.struct([("time", pa.int64()), *list(_EVENT)[1:]])))
            columns[name] = [[{"time": ns_to_ch(e["time"]), "name": e["name"], "attributes": dict(e["attributes"])}
                              for e in each] for each in plain.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]
