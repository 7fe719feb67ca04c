"""Latency histograms, pure: error bound vs exact quantiles, merging; span builders the rollup tests share."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.rollup import (
    GAMMA,
    RELATIVE_ERROR,
    ZERO_BUCKET,
    bucket_of,
    bucket_value,
    histogram_of,
    merge_histograms,
    quantile_from_histogram,
    quantile_rank,
)
from schemas.span import Span

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


def random_spans(rng: random.Random, n: int, base_ns: int, tenants: tuple[str, ...] = ("t1", "t2")) -> list[Span]:
    """`n` spans over 5 minutes from `base_ns`, varied in every rollup dimension and counter."""
    spans = []
    for i in range(n):
        spans.append(make_span(
            rng.choice(tenants), i, base_ns + rng.randrange(0, 5 * MINUTE_NS), rng.randrange(0, 30_000_000_000),
            service_name=rng.choice(["api", "worker"]), request_model=rng.choice(["gpt-4o", "claude"]),
            status_code=rng.choice(["ok", "ok", "error", "unset"]), input_tokens=rng.randrange(0, 5000),
            output_tokens=rng.randrange(0, 900), cached_input_tokens=rng.randrange(0, 100),
            cache_write_tokens=rng.randrange(0, 50), reasoning_tokens=rng.randrange(0, 70),
            cost_usd=None if rng.random() < 0.2 else Decimal(rng.randrange(0, 10**10)) / Decimal(10**12),
            prompt_name=rng.choice(["", "summarise"]), prompt_version=rng.choice(["", "v2"]),
        ))
    return spans


def test_gamma_gives_the_stated_relative_error() -> None:
    assert math.isclose(GAMMA, 1.01 / 0.99)
