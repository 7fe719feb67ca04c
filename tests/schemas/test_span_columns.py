"""The worker's Arrow columns hold what `Span.to_row` says, and the spans table stores them exactly as
it stores those rows sent as JSON."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pyarrow as pa

from llmscope.storage import Store
from schemas import span_columns
from schemas.span import Span, SpanEvent
from tests.schemas.test_rollup import make_span

NOW = time.time_ns()


def _spans(tenant: str) -> list[Span]:
    """Every kind of value a column can hold: empty and full lists and maps, events with and
    without attributes, no cost, an exact cost, a cost finer than the column, the largest cost,
    non-ASCII text, an end before the start."""
    plain = make_span(tenant, 1, NOW - 10**9, 2_500_000)
    full = make_span(
        tenant, 2, NOW - 2 * 10**9, 7_000_000_123, parent_span_id="0" * 15 + "1", status_code="error",
        status_message="Zeitüberschreitung ⏱", response_model="gpt-4o", model_version="2024-08-06",
        input_tokens=1200, output_tokens=340, cached_input_tokens=200, cache_write_tokens=100, reasoning_tokens=40,
        usage_reported=True, cost_usd=Decimal("0.0123456789012345678"), price_source="genai-prices@0.2.3",
        session_id="s-1", user_id="u-1", prompt_name="p", prompt_version="3", inherited=["user_id", "session_id"],
        finish_reasons=["stop", "length"], attributes={"gen_ai.prompt": "[EMAIL] says hi", "k": ""},
        pii_counts={"email": 2, "phone": 1}, resource_attributes={"service.name": "svc", "host.name": "h"},
        events=[SpanEvent(NOW - 10**9 + 5, "gen_ai.choice", {"index": "0"}), SpanEvent(NOW - 10**9 + 9, "exception")],
        source="sdk",
    )  # fmt: skip
    zero = make_span(tenant, 3, NOW - 3 * 10**9, 0, usage_reported=True, cost_usd=Decimal(0))
    ends_first = make_span(tenant, 4, NOW - 4 * 10**9, -5)  # a clock skew: the duration is 0, not negative
    # Just under what the cost stage lets through (10^26), with more decimals than the column.
    dearest = make_span(tenant, 5, NOW - 5 * 10**9, 1, usage_reported=True,
                        cost_usd=Decimal("99999999999999999999999999.123456789012345"))
    return [plain, full, zero, ends_first, dearest]


def test_the_schema_is_the_spans_table(store: Store) -> None:
    assert store.query_arrow(f"SELECT * FROM {store.database}.spans LIMIT 0").schema.equals(span_columns.SPANS_SCHEMA)


def test_the_columns_read_back_as_the_rows() -> None:
    spans = _spans("t-columns")
    received = [NOW + i for i in range(5)]
    back = span_columns.rows(span_columns.encode(spans, received))
    expected = [s.to_row(at) for s, at in zip(spans, received)]
    # The one difference is the store's own: a cost finer than 12 decimals is cut towards zero.
    assert expected[1]["cost_usd"] == "0.0123456789012345678"
    expected[1]["cost_usd"] = "0.012345678901"
    expected[4]["cost_usd"] = "99999999999999999999999999.123456789012"
    assert [{**r, "cost_usd": _cost(r["cost_usd"])} for r in back] == [
        {**r, "cost_usd": _cost(r["cost_usd"])} for r in expected
    ]
    assert span_columns.rows(span_columns.encode([], [])) == []


def test_a_batch_larger_than_a_chunk_keeps_every_span_in_order() -> None:
    count = 2 * span_columns._CHUNK + 3  # three record batches
    spans = [make_span("t-chunks", i, NOW - i, 1000 + i, cost_usd=Decimal(i) / 7) for i in range(count)]
    received = [NOW + i for i in range(count)]
    back = span_columns.rows(span_columns.encode(spans, received))
    expected = [s.to_row(at) for s, at in zip(spans, received)]
    assert [(r["span_id"], r["duration_ns"], r["ingested_at"]) for r in back] == [
        (r["span_id"], r["duration_ns"], r["ingested_at"]) for r in expected
    ]


def test_the_store_keeps_the_same_values_from_columns_as_from_json_rows(store: Store) -> None:
    by_json, by_columns = f"t-json-{uuid.uuid4().hex[:8]}", f"t-arrow-{uuid.uuid4().hex[:8]}"
    store.insert_rows(f"{store.database}.spans", [s.to_row(NOW) for s in _spans(by_json)])
    store.insert(f"{store.database}.spans", span_columns.encode(_spans(by_columns), [NOW] * 5), span_columns.FORMAT)
    sql = f"SELECT * EXCEPT tenant_id FROM {store.database}.spans WHERE tenant_id = {{t:String}} ORDER BY span_id"
    json_rows = store.query_arrow(sql, {"t": by_json})
    column_rows = store.query_arrow(sql, {"t": by_columns})
    assert json_rows.num_rows == 5
    assert column_rows.equals(json_rows), _first_difference(json_rows, column_rows)


def _cost(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _first_difference(a: pa.Table, b: pa.Table) -> str:
    for name in a.column_names:
        if not a.column(name).equals(b.column(name)):
            return f"{name}: {a.column(name).to_pylist()} != {b.column(name).to_pylist()}"
    return "schemas differ"
