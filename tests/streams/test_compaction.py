"""Compaction over the real chDB store: hour/day totals equal raw span sums, redelivery and late data."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmscope.storage import Store
from schemas.span import Span
from streams.compaction import _ranges, compact, floor_day, floor_hour, read_watermarks
from streams.rollup import (
    ROLLUP_DAY,
    ROLLUP_HOUR,
    bucket_of,
    bucket_sql,
    quantile_from_histogram,
    quantile_sql,
    rollup_rows,
    rollup_table,
)
from streams.sink import SourceOffset
from tests.streams.test_rollup import make_span

LATENESS = timedelta(hours=2)
TENANT = "compact-a"
OTHER = "compact-b"
TOPIC = f"compaction-test-{time.time_ns()}"
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
        "reasoning_tokens", "cost_known", "duration_ns_sum", "cost_usd")


def _write(store: Store, spans: list[Span], offset: int, partition: int = 0) -> None:
    """What the worker does per Kafka message: spans to the spans table, minute rows to rollup_minute."""
    db = store.database
    store.insert_rows(f"{db}.spans", [s.to_row(time.time_ns()) for s in spans])
    store.insert_rows(rollup_table(db), rollup_rows(spans, SourceOffset(TOPIC, partition, offset)))


def _make(rng: random.Random, tenant: str, first: int, n: int, lo: datetime, hi: datetime) -> list[Span]:
    span_ns = int((hi - lo).total_seconds() * 1e9)
    base = int(lo.timestamp() * 1e9)
    return [
        make_span(
            tenant, first + i, base + rng.randrange(span_ns), rng.randrange(0, 20 * 10**9),
            request_model=rng.choice(["gpt-4o", "claude", "llama"]), status_code=rng.choice(["ok", "ok", "error"]),
            input_tokens=rng.randrange(5000), output_tokens=rng.randrange(900), cached_input_tokens=rng.randrange(99),
            cache_write_tokens=rng.randrange(9), reasoning_tokens=rng.randrange(50),
            cost_usd=None if rng.random() < 0.25 else Decimal(rng.randrange(10**14)) / Decimal(10**16),
        )
        for i in range(n)
    ]


def _raw(store: Store, tenant: str, lo: datetime, hi: datetime, per: str) -> dict[int, dict]:
    df = store.query(
        f"""SELECT toUnixTimestamp({per}(start_time)) AS t, count() AS requests, countIf(status_code = 'error') AS errors,
            sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
            sum(cached_input_tokens) AS cached_input_tokens, sum(cache_write_tokens) AS cache_write_tokens,
            sum(reasoning_tokens) AS reasoning_tokens, count(s.cost_usd) AS cost_known,
            sum(duration_ns) AS duration_ns_sum, sum(coalesce(s.cost_usd, toDecimal128(0, 12))) AS cost_usd
        FROM {store.database}.spans AS s FINAL
        WHERE tenant_id = {{t:String}} AND start_time >= {{lo:DateTime('UTC')}} AND start_time < {{hi:DateTime('UTC')}}
        GROUP BY t""",
        {"t": tenant, "lo": lo.strftime("%F %T"), "hi": hi.strftime("%F %T")},
    )
    return {r.pop("t"): r for r in df.to_dicts()}


def _level(store: Store, table: str, col: str, tenant: str, lo: datetime, hi: datetime) -> dict[int, dict]:
    df = store.query(
        f"""SELECT toUnixTimestamp({col}) AS t, {", ".join(f"sum({c}) AS {c}" for c in SUMS)}
        FROM {store.database}.{table} FINAL
        WHERE tenant_id = {{t:String}} AND {col} >= {{lo:DateTime('UTC')}} AND {col} < {{hi:DateTime('UTC')}}
        GROUP BY t""",
        {"t": tenant, "lo": lo.strftime("%F %T"), "hi": hi.strftime("%F %T")},
    )
    return {r.pop("t"): r for r in df.to_dicts()}


def _snapshot(store: Store, table: str, tenant: str) -> list[dict]:
    df = store.query(f"SELECT * EXCEPT version FROM {store.database}.{table} FINAL WHERE tenant_id = {{t:String}}",
                     {"t": tenant})
    return sorted(df.to_dicts(), key=repr)


@pytest.fixture(scope="module")
def seeded(store: Store) -> dict:
    rng = random.Random(2024)
    now = datetime.now(timezone.utc)
    start = floor_day(now - timedelta(days=3))
    messages = [_make(rng, TENANT, i * 1000, 60, start, now) for i in range(15)]
    messages.append(_make(rng, OTHER, 90_000, 40, start, now))
    for offset, spans in enumerate(messages):
        _write(store, spans, offset)
    # Redelivery after a crash: messages 3-5 again, then 5-6 re-batched differently.
    for offset in (3, 4, 5, 5, 6):
        _write(store, messages[offset], offset)
    return {"now": now, "start": start, "messages": messages}


def test_hour_and_day_totals_equal_raw_span_sums(store: Store, seeded: dict) -> None:
    now, start = seeded["now"], seeded["start"]
    compact(store, now, LATENESS)
    hour_hi, day_hi = floor_hour(now - LATENESS), floor_day(floor_hour(now - LATENESS))
    for tenant in (TENANT, OTHER):
        hours = _level(store, ROLLUP_HOUR, "hour", tenant, start, now + timedelta(days=1))
        assert hours == _raw(store, tenant, start, hour_hi, "toStartOfHour")  # to the token and the 1e-12 dollar
        assert max(hours) < hour_hi.timestamp()  # open hours are not compacted
        days = _level(store, ROLLUP_DAY, "day", tenant, start, now + timedelta(days=1))
        assert days == _raw(store, tenant, start, day_hi, "toStartOfDay")
        assert len(days) >= 2
    marks = read_watermarks(store)
    assert marks["hour"][0] >= hour_hi and marks["day"][0] >= day_hi and marks["day"][0] <= marks["hour"][0]
    # Redelivered messages were written twice but count once.
    spans = [s for m in seeded["messages"] if m[0].tenant_id == TENANT for s in m]
    before = [s for s in spans if s.start_time_ns < hour_hi.timestamp() * 1e9]
    total = sum(r["requests"] for r in _level(store, ROLLUP_HOUR, "hour", TENANT, start, hour_hi).values())
    assert total == len(before)


def test_compacting_again_changes_nothing(store: Store, seeded: dict) -> None:
    compact(store, seeded["now"], LATENESS)
    hours, days = _snapshot(store, ROLLUP_HOUR, TENANT), _snapshot(store, ROLLUP_DAY, TENANT)
    compact(store, seeded["now"], LATENESS)
    compact(store, seeded["now"] - timedelta(hours=5), LATENESS)  # a clock going back moves nothing back
    assert _snapshot(store, ROLLUP_HOUR, TENANT) == hours and _snapshot(store, ROLLUP_DAY, TENANT) == days


def test_late_spans_and_late_redeliveries_are_picked_up(store: Store, seeded: dict) -> None:
    now, start = seeded["now"], seeded["start"]
    compact(store, now, LATENESS)
    hour_hi = floor_hour(now - LATENESS)
    before = _level(store, ROLLUP_DAY, "day", TENANT, start, now)
    rng = random.Random(5)
    # Far later than the lateness bound: two days old, and just behind the hour watermark.
    late = _make(rng, TENANT, 500_000, 30, now - timedelta(days=2, hours=1), now - timedelta(days=2))
    late += _make(rng, TENANT, 600_000, 10, hour_hi - timedelta(minutes=50), hour_hi - timedelta(minutes=1))
    _write(store, late, 100)
    _write(store, seeded["messages"][2], 2)  # and an old message redelivered once more
    compact(store, now, LATENESS)
    day_hi = floor_day(hour_hi)
    assert _level(store, ROLLUP_HOUR, "hour", TENANT, start, hour_hi) == _raw(store, TENANT, start, hour_hi, "toStartOfHour")
    after = _level(store, ROLLUP_DAY, "day", TENANT, start, now)
    assert after == _raw(store, TENANT, start, day_hi, "toStartOfDay")
    added = sum(1 for s in late if s.start_time_ns < day_hi.timestamp() * 1e9)
    assert sum(r["requests"] for r in after.values()) == sum(r["requests"] for r in before.values()) + added


def test_contiguous_ranges() -> None:
    h = lambda n: datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(hours=n)  # noqa: E731
    assert _ranges([h(3), h(1), h(2), h(7), h(2)], timedelta(hours=1)) == [(h(1), h(4)), (h(7), h(8))]
    assert _ranges([], timedelta(hours=1)) == []


def test_sql_twins_match_the_python_histogram(store: Store) -> None:
    rng = random.Random(3)
    durations = [0, 1, 999, 1000, 1001] + [int(rng.lognormvariate(18, 3)) for _ in range(3000)]
    df = store.query(f"SELECT d, {bucket_sql('d')} AS b FROM (SELECT arrayJoin({{ds:Array(UInt64)}}) AS d)",
                     {"ds": str(durations)})
    mismatched = [(d, b) for d, b in zip(df["d"].to_list(), df["b"].to_list()) if b != bucket_of(d / 1e6)]
    assert not mismatched
    for _ in range(50):
        hist = {rng.randrange(-400, 900): rng.randrange(1, 50) for _ in range(rng.randrange(1, 40))}
        if rng.random() < 0.3:
            hist[-32768] = rng.randrange(1, 9)
        keys = list(hist)
        rng.shuffle(keys)  # unsorted on purpose: quantile_sql must sort
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            got = store.query(
                f"WITH mapFromArrays({{k:Array(Int16)}}, {{v:Array(UInt64)}}) AS h SELECT {quantile_sql('h', q)} AS x",
                {"k": str(keys), "v": str([hist[k] for k in keys])},
            )["x"][0]
            assert got == pytest.approx(quantile_from_histogram(hist, q), rel=1e-12)
