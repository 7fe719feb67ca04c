"""The rollup tables' contract: their names, dimensions and counters, the log-bucketed latency
histogram they carry, the SQL that aggregates spans into minute rows, and the watermarks that say
how far each level is complete. The worker writes them (streams/compaction.py); the query API and
the Grafana dashboards read them.

Rollups are derived from the deduplicated spans table (never from Kafka messages), so every level
counts each (tenant, trace, span) once however often it was sent or delivered: see
streams/compaction.py. Watermarks: hour rows are complete for hours before the `hour` watermark's
`covered_until`, day rows for days before the `day` one; readers take days, then hours below
their watermarks and minutes for the rest, so nothing is counted twice.

No sum can wrap. ClickHouse's `sum()` keeps the type of what it sums and wraps silently (UInt64 at
2**64, Decimal(38, s) at 10**(38-s)), and durations alone reach 2**64 ns after 30,500 week-long spans.
So every sum is taken in a type wide enough for any table (sum_sql): token counts and durations
(each below 2**64) are summed and stored as Decimal(38, 0), which holds the sum of 5 * 10**18 of
them at their largest (a table of that many spans would hold exabytes); costs (each below 10**26,
the spans column's range) are summed as Decimal(76, 12) and stored back as Decimal(38, 12), which
ClickHouse checks: a total beyond it is refused, never wrapped. Counts (requests, errors, the
histogram) count rows and stay UInt64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from llmscope.storage import Store
from schemas.times import ceil_to, floor_to

# Histogram: bucket i holds durations in (GAMMA**(i-1), GAMMA**i] ms and reports 2*GAMMA**i/(GAMMA+1),
# which is within RELATIVE_ERROR of every value in the bucket (the DDSketch construction).
RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -32768  # durations under MIN_MS (including 0); reported as 0
MIN_MS = 0.001
_MAX_BUCKET = 32767  # Int16 upper bound; GAMMA**32767 ms is far beyond any real duration
_FMT = "%Y-%m-%d %H:%M:%S"

ROLLUP_MINUTE = "rollup_minute"
ROLLUP_HOUR = "rollup_hour"
ROLLUP_DAY = "rollup_day"
ROLLUP_WATERMARK = "rollup_watermark"
ROLLUP_DIRTY = "rollup_dirty"  # (tenant, minute) pairs stored batches touched: what to recompute
# (table, time column, seconds per row), coarsest first: how readers split a range (segments).
ROLLUP_LEVELS = ((ROLLUP_DAY, "day", 86400), (ROLLUP_HOUR, "hour", 3600), (ROLLUP_MINUTE, "minute", 60))
Level = tuple[str, str, int, datetime]  # (table, time column, seconds per row, rows complete before)

# The rollup key besides tenant and time, in table order; user and session are deliberately absent
# (high cardinality: those questions are answered from the spans table).
DIMENSIONS = ("service_name", "provider", "model", "operation", "status_code", "prompt_name", "prompt_version")
COUNTERS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_known",
    "duration_ns_sum",
)


# Sums kept as Decimal(38, 0) in every rollup level (migration 0011); the API reads them so.
WIDE_SUMS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
             "duration_ns_sum")


def sum_sql(column: str, expr: str | None = None) -> str:
    """`sum(expr) AS column` in a type that cannot wrap (see the module docstring); expr defaults to
    the column itself (summing rollup rows)."""
    e = expr or column
    if column == "cost_usd":
        return f"sum(toDecimal256({e}, 12)) AS cost_usd"
    if column in WIDE_SUMS:
        return f"sum(toDecimal128({e}, 0)) AS {column}"
    return f"sum({e}) AS {column}"


def bucket_of(ms: float) -> int:
    if not ms >= MIN_MS:  # also catches NaN
        return ZERO_BUCKET
    return min(_MAX_BUCKET, math.ceil(math.log(ms) / _LOG_GAMMA))


def bucket_value(bucket: int) -> float:
    """The value a bucket reports, in ms."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return 2 * GAMMA**bucket / (GAMMA + 1)


def quantile_rank(q: float, n: int) -> int:
    """0-based rank of the q-quantile among n sorted values (the lower one, no interpolation)."""
    return math.floor(q * (n - 1))


def quantile_from_histogram(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile in ms (None if empty): within RELATIVE_ERROR of sorted(values)[quantile_rank(q, n)]."""
    if not 0 <= q <= 1:
        raise ValueError("q must be within [0, 1]")
    items = sorted((int(k), int(v)) for k, v in hist.items() if int(v) > 0)
    n = sum(v for _, v in items)
    if n == 0:
        return None
    rank, seen = quantile_rank(q, n), 0
    for bucket, count in items:
        seen += count
        if seen > rank:
            return bucket_value(bucket)
    return bucket_value(items[-1][0])  # unreachable: seen ends at n > rank


def histogram_of(durations_ms: Sequence[float]) -> dict[int, int]:
    hist: dict[int, int] = {}
    for ms in durations_ms:
        b = bucket_of(ms)
        hist[b] = hist.get(b, 0) + 1
    return hist


def merge_histograms(*hists: Mapping[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for k, v in h.items():
            out[int(k)] = out.get(int(k), 0) + int(v)
    return out


def bucket_sql(duration_ns: str) -> str:
    """The same bucket as bucket_of, in ClickHouse SQL, for a UInt64 nanoseconds expression."""
    return (
        f"if({duration_ns} < {int(MIN_MS * 1e6)}, toInt16({ZERO_BUCKET}), "
        f"toInt16(least({_MAX_BUCKET}, ceil(log({duration_ns} / 1e6) / {_LOG_GAMMA!r}))))"
    )


def quantile_sql(hist: str, q: float) -> str:
    """quantile_from_histogram in ClickHouse SQL over a Map(Int16, UInt64) expression; NULL if empty.

    mapSort because a Map's keys are only sorted when it comes from sumMap."""
    q = float(q)
    return (
        f"if(arraySum(mapValues({hist})) = 0, NULL, "
        f"arrayElement(arrayMap(k -> if(k = {ZERO_BUCKET}, 0., 2 * pow({GAMMA!r}, k) / {GAMMA + 1!r}), mapKeys(mapSort({hist}))), "
        f"arrayFirstIndex(c -> c > toUInt64(floor({q!r} * (arraySum(mapValues({hist})) - 1))), "
        f"arrayCumSum(mapValues(mapSort({hist}))))))"
    )


def span_aggregates_sql(spans_alias: str = "s", latency: bool = True) -> str:
    """COUNTERS, cost_usd and latency_hist aggregated over rows of the spans table (aliased
    `spans_alias`): one rollup row's values, exactly as the minute compactor computes them.
    Without `latency`, latency_hist is 0 (the histogram is the dearest part to merge).

    The spans table's Decimal(38, 12) cost is summed exactly (in Decimal(76, 12)), so sums agree to the
    last digit; a span without a known cost adds 0 to cost_usd and nothing to cost_known."""
    return ", ".join(
        (
            "count() AS requests",
            "countIf(status_code = 'error') AS errors",
            *(sum_sql(c) for c in ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                                   "reasoning_tokens")),
            f"count({spans_alias}.cost_usd) AS cost_known",
            sum_sql("duration_ns_sum", "duration_ns"),
            sum_sql("cost_usd", f"coalesce({spans_alias}.cost_usd, toDecimal128(0, 12))"),
            f"sumMap(map({bucket_sql('duration_ns')}, toUInt64(1))) AS latency_hist" if latency else "0 AS latency_hist",
        )
    )


def segments(lo: datetime, hi: datetime, levels: list[Level]) -> list[tuple[str, str, datetime, datetime]]:
    """Split [lo, hi) into disjoint runs, each answered by the coarsest level that covers it exactly."""
    if lo >= hi or not levels:
        return []
    (table, col, step, watermark), rest = levels[0], levels[1:]
    a, b = ceil_to(lo, step), min(floor_to(hi, step), watermark)
    if a >= b:
        return segments(lo, hi, rest)
    return segments(lo, a, rest) + [(table, col, a, b)] + segments(b, hi, rest)


def read_watermarks(store: Store) -> dict[str, tuple[datetime, datetime]]:
    """level -> (covered_until, scanned_at); missing levels are absent (nothing compacted yet)."""
    df = store.query(
        f"SELECT level, toUnixTimestamp(covered_until) AS covered, toUnixTimestamp64Micro(scanned_at) AS scanned "
        f"FROM {store.database}.{ROLLUP_WATERMARK} FINAL"
    )
    return {
        r["level"]: (
            datetime.fromtimestamp(r["covered"], timezone.utc),
            datetime.fromtimestamp(r["scanned"] / 1e6, timezone.utc),
        )
        for r in df.to_dicts()
    }


def write_watermark(store: Store, level: str, covered: datetime, scanned_at_us: int) -> None:
    """Record that `level` rows are complete for periods before `covered`, from a scan that started
    at `scanned_at_us` (server clock, microseconds); the newest version wins."""
    store.command(
        f"INSERT INTO {store.database}.{ROLLUP_WATERMARK} (level, covered_until, scanned_at, version) "
        "SELECT {level:String}, {covered:DateTime('UTC')}, fromUnixTimestamp64Micro({scanned:Int64}, 'UTC'), "
        "toUnixTimestamp64Micro(now64(6))",
        {"level": level, "covered": covered.strftime(_FMT), "scanned": scanned_at_us},
    )
