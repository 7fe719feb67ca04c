"""Compaction over the real chDB store: every level equals the sums over distinct spans, whatever was
sent or delivered twice, late, or changed; the minute compactor folds in exactly the marked minutes."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llmscope.storage import Store
from schemas.rollup import (
    COUNTERS,
    DIMENSIONS,
    ROLLUP_DAY,
    ROLLUP_HOUR,
    ROLLUP_MINUTE,
    WIDE_SUMS,
    bucket_of,
    bucket_sql,
    histogram_of,
    quantile_from_histogram,
    quantile_sql,
    read_watermarks,
    sum_sql,
)
from schemas.span import Span
from schemas.times import floor_day, floor_hour
from streams.compaction import MARK_SLACK, MinuteCompactor, _ranges, compact
from streams.compaction import rebuild_minutes, recompute_minutes
from tests.schemas.test_rollup import MINUTE_NS, make_span, random_spans

LATENESS = timedelta(hours=2)
TENANT = "compact-a"
OTHER = "compact-b"
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
        "reasoning_tokens", "cost_known", "duration_ns_sum", "cost_usd")


def store_spans(store: Store, spans: list[Span]) -> None:
    """What the worker and its minute compactor do with a batch: the spans (a new version of any
    span sent before), then the minutes they touch recomputed from the spans table."""
    store.insert_rows(f"{store.database}.spans", [s.to_row(time.time_ns()) for s in spans])
    recompute_minutes(store, {s.tenant_id for s in spans},
                      {datetime.fromtimestamp(s.start_time_ns // MINUTE_NS * 60, timezone.utc) for s in spans})


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
    df = store.query(f"SELECT * EXCEPT (version, is_deleted) FROM {store.database}.{table} FINAL WHERE tenant_id = {{t:String}}",
                     {"t": tenant})
    return sorted(df.to_dicts(), key=repr)


@pytest.fixture(scope="module")
def seeded(store: Store) -> dict:
    rng = random.Random(2024)
    now = datetime.now(timezone.utc)
    start = floor_day(now - timedelta(days=3))
    messages = [_make(rng, TENANT, i * 1000, 60, start, now) for i in range(15)]
    messages.append(_make(rng, OTHER, 90_000, 40, start, now))
    for spans in messages:
        store_spans(store, spans)
    # Redelivery after a crash, and client retries: messages 3-5 again, 5 twice, 6 re-batched with 2.
    for spans in (messages[3], messages[4], messages[5], messages[5], messages[6] + messages[2][:7]):
        store_spans(store, spans)
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
    store_spans(store, late)
    store_spans(store, seeded["messages"][2])  # and an old message redelivered once more
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


def _minute_rows(store: Store, tenants: tuple[str, ...]) -> dict[tuple, dict]:
    df = store.query(
        f"SELECT * EXCEPT (version, is_deleted, inserted_at, minute), toUnixTimestamp(minute) AS minute FROM {store.database}.{ROLLUP_MINUTE} FINAL "
        "WHERE tenant_id IN {t:Array(String)}",
        {"t": list(tenants)},
    )
    return {(r["tenant_id"], int(r["minute"]), *(r[d] for d in DIMENSIONS)): r for r in df.to_dicts()}


def test_minute_rows_equal_the_sums_over_distinct_spans_however_often_sent(store: Store) -> None:
    rng = random.Random(42)
    tenants = (f"minutes-{rng.random()}", f"minutes-{rng.random()}")
    spans = random_spans(rng, 2000, (int(time.time()) - 3600) * 10**9, tenants)
    store_spans(store, spans)
    # Client retries and redeliveries, in other batch compositions, some much later.
    for _ in range(3):
        store_spans(store, rng.sample(spans, 300))

    expected: dict[tuple, dict] = {}
    for s in spans:
        key = (s.tenant_id, s.start_time_ns // MINUTE_NS * 60, s.service_name, s.provider, s.model, s.operation,
               s.status_code, s.prompt_name, s.prompt_version)
        e = expected.setdefault(key, {c: 0 for c in COUNTERS} | {"cost_usd": Decimal(0), "durations": []})
        e["requests"] += 1
        e["errors"] += s.status_code == "error"
        for c in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
            e[c] += getattr(s, c)
        e["cost_usd"] += s.cost_usd or Decimal(0)
        e["cost_known"] += s.cost_usd is not None
        e["duration_ns_sum"] += s.duration_ns
        e["durations"].append(s.duration_ns / 1e6)
    got = _minute_rows(store, tenants)
    assert got.keys() == expected.keys()
    for key, e in expected.items():
        row = got[key]
        assert {c: row[c] for c in COUNTERS} == {c: e[c] for c in COUNTERS}
        assert Decimal(row["cost_usd"]) == e["cost_usd"]  # these costs have ≤ 12 decimals: exact
        assert dict(row["latency_hist"]) == histogram_of(e["durations"])
    assert sum(r["requests"] for r in got.values()) == len(spans)


def test_a_span_sent_again_with_other_dimensions_leaves_its_old_group(store: Store) -> None:
    tenant = f"regroup-{time.time_ns()}"
    start = (int(time.time()) - 600) * 10**9
    first = make_span(tenant, 1, start, 10**9, request_model="gpt-4o", input_tokens=10)
    other = make_span(tenant, 2, start + 10**9, 10**9, request_model="gpt-4o", input_tokens=5)
    store_spans(store, [first, other])
    store_spans(store, [make_span(tenant, 1, start, 10**9, request_model="claude", input_tokens=10)])
    rows = _minute_rows(store, (tenant,))
    assert {k[4]: (r["requests"], r["input_tokens"]) for k, r in rows.items()} == {"gpt-4o": (1, 5), "claude": (1, 10)}
    # The group a recomputation leaves empty disappears entirely.
    store_spans(store, [make_span(tenant, 2, start + 10**9, 10**9, request_model="claude", input_tokens=5)])
    rows = _minute_rows(store, (tenant,))
    assert {k[4]: (r["requests"], r["input_tokens"]) for k, r in rows.items()} == {"claude": (2, 15)}


def test_cost_sums_are_exact_to_the_stored_twelve_decimals_and_unknown_cost_stays_unknown(store: Store) -> None:
    tenant = f"cost-{time.time_ns()}"
    base = (int(time.time()) - 600) // 60 * 60 * 10**9
    store_spans(store, [
        make_span(tenant, 1, base, 10**6, cost_usd=Decimal("0.0000000000019")),  # stored as 1e-12
        make_span(tenant, 2, base, 10**6, cost_usd=Decimal("0.0000000000019")),
        make_span(tenant, 3, base, 10**6, cost_usd=None, request_model="other"),
    ])
    rows = {k[4]: r for k, r in _minute_rows(store, (tenant,)).items()}
    assert rows["gpt-4o"]["cost_usd"] == Decimal("0.000000000002") and rows["gpt-4o"]["cost_known"] == 2
    assert rows["other"]["cost_known"] == 0 and rows["other"]["cost_usd"] == 0


def test_late_span_lands_in_its_own_minute_and_user_session_are_not_dimensions(store: Store) -> None:
    tenant = f"late-{time.time_ns()}"
    now = int(time.time()) * 10**9
    late = make_span(tenant, 1, now - 5 * 3600 * 10**9 + 7 * 10**9, 10**6, user_id="u1", session_id="s1")
    fresh = make_span(tenant, 2, now - 10**9, 10**6, user_id="u2", session_id="s2")
    store_spans(store, [late, fresh])
    minutes = sorted(k[1] for k in _minute_rows(store, (tenant,)))
    assert minutes == [late.start_time_ns // MINUTE_NS * 60, fresh.start_time_ns // MINUTE_NS * 60]
    assert not {"user_id", "session_id"} & set(next(iter(_minute_rows(store, (tenant,)).values())))


def _mark(store: Store, spans: list[Span], batch: str, marked_at: datetime | None = None) -> None:
    store.insert_rows(f"{store.database}.spans", [s.to_row(time.time_ns()) for s in spans])
    rows = [{"tenant_id": s.tenant_id, "minute": s.start_time_ns // MINUTE_NS * 60, "batch": batch} for s in spans]
    if marked_at is not None:
        for r in rows:
            r["marked_at"] = marked_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    store.insert_rows(f"{store.database}.rollup_dirty", rows)


def _requests(store: Store, tenant: str) -> int:
    return sum(r["requests"] for r in _minute_rows(store, (tenant,)).values())


def test_minute_compactor_folds_in_each_marked_batch_once_and_again_after_a_restart(store: Store) -> None:
    tenant = f"marks-{time.time_ns()}"
    start = (int(time.time()) - 120) * 10**9
    compactor = MinuteCompactor(store)
    _mark(store, [make_span(tenant, i, start + i * 10**9, 10**6) for i in range(5)], f"{tenant}-b1")
    assert {t for t, _ in compactor.run()} >= {tenant}
    assert _requests(store, tenant) == 5
    assert tenant not in {t for t, _ in compactor.run()}  # nothing new for it: no recomputation
    _mark(store, [make_span(tenant, 9, start, 10**6)], f"{tenant}-b2")
    compactor.run()
    assert _requests(store, tenant) == 6
    restarted = MinuteCompactor(store)  # a new leader recomputes the recent marks once; totals hold
    assert tenant in {t for t, _ in restarted.run()}
    assert _requests(store, tenant) == 6


def test_a_mark_written_during_the_previous_scan_is_still_folded_in(store: Store) -> None:
    tenant = f"inflight-{time.time_ns()}"
    compactor = MinuteCompactor(store)
    compactor.run()
    scanned = read_watermarks(store)["minute"][1]
    # An INSERT in flight while that scan ran: its rows carry a time before the scan started.
    _mark(store, [make_span(tenant, 1, (int(time.time()) - 60) * 10**9, 10**6)], f"{tenant}-b",
          marked_at=scanned - MARK_SLACK / 2)
    assert tenant in {t for t, _ in compactor.run()}
    assert _requests(store, tenant) == 1


def test_a_bulk_rebuild_gives_the_same_minutes_as_the_compactor(store: Store) -> None:
    rng = random.Random(9)
    tenants = (f"rebuild-{rng.random()}",)
    base = (int(time.time()) - 7200) * 10**9
    spans = random_spans(rng, 500, base, tenants)
    store_spans(store, spans)
    store_spans(store, spans[:100])  # retried
    before = _minute_rows(store, tenants)
    lo = datetime.fromtimestamp(base // 10**9 - 60, timezone.utc)
    rebuild_minutes(store, lo, lo + timedelta(minutes=10))
    assert _minute_rows(store, tenants) == before
    assert sum(r["requests"] for r in before.values()) == 500


# --- Sums that cannot wrap ----------------------------------------------------------------------------


@pytest.mark.parametrize("column", [*WIDE_SUMS, "cost_usd"])
def test_sums_are_taken_in_a_type_that_cannot_wrap(store: Store, column: str) -> None:
    # Three of the largest values each column can hold: a plain sum() wraps on the second.
    largest, expected = (("toDecimal128('99999999999999999999999999.999999999999', 12)",
                          "299999999999999999999999999.999999999997") if column == "cost_usd"
                         else ("toUInt64(18446744073709551615)", str(3 * (2**64 - 1))))
    df = store.query(f"SELECT toString({column}) AS s FROM (SELECT {sum_sql(column, 'x')} "
                     f"FROM (SELECT {largest} AS x FROM numbers(3)))")
    assert df["s"][0] == expected


def test_spans_lasting_centuries_do_not_wrap_the_duration_sums(store: Store) -> None:
    """The ingest refuses spans over 7 days, but a message from another producer reaches the worker
    unchecked: three spans of ~230 years each sum past 2**64 ns at every rollup level."""
    tenant = "compaction-centuries"
    start = (time.time_ns() - 3 * 3600 * 10**9) // MINUTE_NS * MINUTE_NS
    spans = [make_span(tenant, i, start + i, 2**63 - 2 - start - i) for i in range(3)]
    store_spans(store, spans)
    compact(store, datetime.now(timezone.utc), timedelta(minutes=1))
    exact = sum(s.duration_ns for s in spans)
    assert exact > 2**64
    for table, col in (("rollup_minute", "minute"), ("rollup_hour", "hour")):
        df = store.query(f"SELECT toString(sum(duration_ns_sum)) AS s, sum(requests) AS n FROM {store.database}.{table} "
                         "FINAL WHERE tenant_id = {t:String}", {"t": tenant})
        assert (int(df["s"][0]), df["n"][0]) == (exact, 3), table
