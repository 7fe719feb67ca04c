"""Minute rollups and latency histograms, pure: error bound vs exact quantiles, sums vs spans."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.span import Span
from streams.rollup import (
    COUNTERS,
    DIMENSIONS,
    GAMMA,
    RELATIVE_ERROR,
    ZERO_BUCKET,
    bucket_of,
    bucket_value,
    histogram_of,
    merge_histograms,
    quantile_from_histogram,
    quantile_rank,
    rollup_rows,
    rollup_table,
)
from streams.sink import SourceOffset

MINUTE_NS = 60 * 1_000_000_000


def make_span(tenant: str, i: int, start_ns: int, duration_ns: int, **kw: object) -> Span:
    """A span with deterministic ids; keyword arguments override any field."""
    fields: dict[str, object] = dict(
        tenant_id=tenant, trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id="", name="chat",
        kind="client", service_name="svc", start_time_ns=start_ns, end_time_ns=start_ns + duration_ns,
        operation="chat", provider="openai", request_model="gpt-4o",
    )
    fields.update(kw)
    return Span(**fields)  # type: ignore[arg-type]


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[quantile_rank(q, len(ordered))]


def assert_within_bound(values: list[float], q: float) -> None:
    estimate = quantile_from_histogram(histogram_of(values), q)
    exact = exact_quantile(values, q)
    assert estimate is not None
    if exact < 0.001:
        assert estimate == 0.0
    else:
        assert abs(estimate - exact) <= RELATIVE_ERROR * exact * (1 + 1e-9), (q, exact, estimate)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_quantiles_within_relative_error_on_random_latencies(seed: int, q: float) -> None:
    rng = random.Random(seed)
    # Lognormal around ~1 s with a heavy tail, plus a few sub-millisecond and zero durations.
    values = [rng.lognormvariate(7, 1.5) for _ in range(5000)] + [rng.uniform(0, 0.5) for _ in range(50)] + [0.0] * 5
    assert_within_bound(values, q)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=3.6e6, allow_nan=False), min_size=1, max_size=300),
    st.floats(min_value=0, max_value=1),
)
def test_quantile_bound_holds_for_any_data(values: list[float], q: float) -> None:
    assert_within_bound(values, q)


def test_bucket_edges_and_zero_bucket() -> None:
    assert bucket_of(0) == ZERO_BUCKET and bucket_of(0.0009) == ZERO_BUCKET and bucket_of(float("nan")) == ZERO_BUCKET
    assert bucket_value(ZERO_BUCKET) == 0.0
    for ms in (0.001, 0.5, 1.0, 1.5, 250.0, 12_345.6, 3.6e6):
        b = bucket_of(ms)
        assert GAMMA ** (b - 1) < ms * (1 + 1e-12) and ms <= GAMMA**b * (1 + 1e-12)
        assert abs(bucket_value(b) - ms) <= RELATIVE_ERROR * ms * (1 + 1e-9)


def test_merged_histograms_equal_histogram_of_all_values() -> None:
    rng = random.Random(7)
    parts = [[rng.expovariate(1 / 800) for _ in range(rng.randrange(1, 200))] for _ in range(20)]
    merged = merge_histograms(*(histogram_of(p) for p in parts))
    assert merged == histogram_of([v for p in parts for v in p])
    assert quantile_from_histogram({}, 0.5) is None
    with pytest.raises(ValueError):
        quantile_from_histogram(merged, 1.5)


def _spans(rng: random.Random, n: int, base_ns: int) -> list[Span]:
    spans = []
    for i in range(n):
        spans.append(make_span(
            rng.choice(["t1", "t2"]), i, base_ns + rng.randrange(0, 5 * MINUTE_NS), rng.randrange(0, 30_000_000_000),
            service_name=rng.choice(["api", "worker"]), request_model=rng.choice(["gpt-4o", "claude"]),
            status_code=rng.choice(["ok", "ok", "error", "unset"]), input_tokens=rng.randrange(0, 5000),
            output_tokens=rng.randrange(0, 900), cached_input_tokens=rng.randrange(0, 100),
            cache_write_tokens=rng.randrange(0, 50), reasoning_tokens=rng.randrange(0, 70),
            cost_usd=None if rng.random() < 0.2 else Decimal(rng.randrange(0, 10**10)) / Decimal(10**12),
            prompt_name=rng.choice(["", "summarise"]), prompt_version=rng.choice(["", "v2"]),
        ))
    return spans


def test_rollup_rows_sum_to_the_span_sums_per_group() -> None:
    rng = random.Random(42)
    base = 1_700_000_000 * 10**9
    spans = _spans(rng, 2000, base)
    rows = rollup_rows(spans, SourceOffset("ingest", 3, 1234))
    assert all(r["src_topic"] == "ingest" and r["src_partition"] == 3 and r["src_offset"] == 1234 for r in rows)

    expected: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for s in spans:
        key = (s.tenant_id, s.start_time_ns // MINUTE_NS * 60, s.service_name, s.provider, s.model, s.operation,
               s.status_code, s.prompt_name, s.prompt_version)
        e = expected[key]
        e["requests"] += 1
        e["errors"] += s.status_code == "error"
        for c in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
            e[c] += getattr(s, c)
        e["cost_usd"] += s.cost_usd or Decimal(0)
        e["cost_known"] += s.cost_usd is not None
        e["duration_ns_sum"] += s.duration_ns
        e.setdefault("durations", []).append(s.duration_ns / 1e6)
    got = {(r["tenant_id"], r["minute"], *(r[d] for d in DIMENSIONS)): r for r in rows}
    assert got.keys() == expected.keys()
    for key, e in expected.items():
        r = got[key]
        assert {c: r[c] for c in COUNTERS} == {c: e[c] for c in COUNTERS}
        assert Decimal(r["cost_usd"]) == e["cost_usd"]  # costs here have ≤ 12 decimals: exact
        assert {int(k): v for k, v in r["latency_hist"].items()} == histogram_of(e["durations"])
    assert sum(r["requests"] for r in rows) == len(spans)


def test_rollup_rows_are_deterministic_and_json_ready() -> None:
    rng = random.Random(1)
    spans = _spans(rng, 300, 1_700_000_000 * 10**9)
    source = SourceOffset("ingest", 0, 9)
    first, again = rollup_rows(spans, source), rollup_rows(list(spans), source)
    assert first == again  # a redelivery produces identical rows, hence identical keys
    import orjson

    orjson.dumps(first)  # JSON-ready: no Decimal, no datetime
    assert all(isinstance(r["minute"], int) and r["minute"] % 60 == 0 for r in first)
    assert all("E" not in r["cost_usd"] for r in first)


def test_cost_is_truncated_per_span_like_the_spans_table_and_unknown_cost_stays_unknown() -> None:
    base = 1_700_000_000 * 10**9
    spans = [
        make_span("t", 1, base, 1_000_000, cost_usd=Decimal("0.0000000000019")),  # stored as 1e-12
        make_span("t", 2, base, 1_000_000, cost_usd=Decimal("0.0000000000019")),
        make_span("t", 3, base, 1_000_000, cost_usd=None, request_model="other"),
    ]
    rows = {r["model"]: r for r in rollup_rows(spans, SourceOffset("x", 0, 0))}
    assert rows["gpt-4o"]["cost_usd"] == "0.000000000002" and rows["gpt-4o"]["cost_known"] == 2
    assert rows["other"]["cost_known"] == 0 and Decimal(rows["other"]["cost_usd"]) == 0


def test_late_span_lands_in_its_own_minute_and_user_session_are_not_keys() -> None:
    now = 1_700_000_000 * 10**9
    late = make_span("t", 1, now - 5 * 3600 * 10**9 + 7 * 10**9, 10**6, user_id="u1", session_id="s1")
    fresh = make_span("t", 2, now, 10**6, user_id="u2", session_id="s2")
    rows = rollup_rows([late, fresh], SourceOffset("x", 0, 0))
    assert sorted(r["minute"] for r in rows) == [(now - 5 * 3600 * 10**9) // MINUTE_NS * 60, now // MINUTE_NS * 60]
    assert all("user_id" not in r and "session_id" not in r for r in rows)
    assert rollup_table("db") == "db.rollup_minute"
    assert math.isclose(GAMMA, 1.01 / 0.99)
