"""Minute rollups per source Kafka message, and the log-bucketed latency histogram they carry."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from schemas.span import Span
from streams.sink import SourceOffset

# Histogram: bucket i holds durations in (GAMMA**(i-1), GAMMA**i] ms and reports 2*GAMMA**i/(GAMMA+1),
# which is within RELATIVE_ERROR of every value in the bucket (the DDSketch construction).
RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BUCKET = -32768  # durations under MIN_MS (including 0); reported as 0
MIN_MS = 0.001
_MAX_BUCKET = 32767  # Int16 upper bound; GAMMA**32767 ms is far beyond any real duration

# Spans later than this (start time vs. arrival) are still rolled up into their own minute; the
# bound only decides which hours compaction recomputes without being told (see compaction.py).
MAX_LATENESS = timedelta(hours=2)

ROLLUP_MINUTE = "rollup_minute"
ROLLUP_HOUR = "rollup_hour"
ROLLUP_DAY = "rollup_day"
ROLLUP_WATERMARK = "rollup_watermark"

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
_CENT_PLACES = Decimal("0.000000000001")  # Decimal(38, 12): ClickHouse truncates extra digits


def rollup_table(database: str, level: str = ROLLUP_MINUTE) -> str:
    """Fully qualified table name, e.g. `rollup_table(store.database)` for the sink's INSERT."""
    return f"{database}.{level}"


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


@dataclass(slots=True)
class _Acc:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cost_known: int = 0
    duration_ns_sum: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, s: Span) -> None:
        self.requests += 1
        self.errors += s.status_code == "error"
        self.input_tokens += s.input_tokens
        self.output_tokens += s.output_tokens
        self.cached_input_tokens += s.cached_input_tokens
        self.cache_write_tokens += s.cache_write_tokens
        self.reasoning_tokens += s.reasoning_tokens
        if s.cost_usd is not None:
            # Truncate per span exactly as the spans table stores it, so sums agree to the last digit.
            self.cost_usd += s.cost_usd.quantize(_CENT_PLACES, rounding=ROUND_DOWN)
            self.cost_known += 1
        self.duration_ns_sum += s.duration_ns
        b = bucket_of(s.duration_ns / 1e6)
        self.hist[b] = self.hist.get(b, 0) + 1


def rollup_rows(spans: Sequence[Span], source: SourceOffset) -> list[dict[str, Any]]:
    """JSON-ready `rollup_minute` rows for the spans decoded from one Kafka message.

    Deterministic: the same message always yields the same rows with the same keys (the key ends
    with the source offset), so a redelivery replaces rather than adds."""
    groups: dict[tuple[Any, ...], _Acc] = {}
    for s in spans:
        minute = s.start_time_ns // 60_000_000_000 * 60
        key = (s.tenant_id, minute, s.service_name, s.provider, s.model, s.operation, s.status_code,
               s.prompt_name, s.prompt_version)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = _Acc()
        acc.add(s)
    rows = []
    for key in sorted(groups):
        acc = groups[key]
        row: dict[str, Any] = {"tenant_id": key[0], "minute": key[1]}
        row.update(zip(DIMENSIONS, key[2:]))
        row |= {"src_topic": source.topic, "src_partition": source.partition, "src_offset": source.offset}
        row |= {name: getattr(acc, name) for name in COUNTERS}
        row["cost_usd"] = format(acc.cost_usd, "f")  # never exponent notation ("1E-12")
        row["latency_hist"] = {str(k): acc.hist[k] for k in sorted(acc.hist)}
        rows.append(row)
    return rows
