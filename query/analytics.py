"""The analytics planner: which rows answer an analytics question, as one SQL statement. Pure: the
routes (query/metrics.py) read the watermarks and run the statement.

What is counted: model calls only unless the question names an operation (schemas/operations.py);
`operation` and `model` are rollup dimensions, so the rule costs no raw scan, and the rollups
themselves keep every span, per operation.

Each question is answered by one SQL statement that UNIONs disjoint time segments: closed days from
rollup_day, closed hours from rollup_hour, the rest from rollup_minute, split at the compaction
watermarks (see streams/compaction.py), so no span is counted twice. A segment level is only used
when its period fits the requested interval. Filters or group_by on user_id/session_id read the
spans table (FINAL) instead, because those dimensions are not in the rollup key. Ranges are aligned
to whole minutes (start down, end up) and the response states the range actually answered;
timeseries buckets are aligned to the interval since the epoch, so the first one may be partial.
Percentiles come from merged log histograms and are within `latency_relative_error` of the exact
value; durations under 1 µs report 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import polars as pl

from schemas.operations import ALL_OPERATIONS, model_call_sql
from schemas.rollup import (
    COUNTERS,
    ROLLUP_LEVELS,
    quantile_sql,
    segments,
    span_aggregates_sql,
    sum_sql,
)
from schemas.rollup import DIMENSIONS as ROLLUP_DIMENSIONS
from schemas.times import EPOCH, ceil_to, floor_to

METRICS = ("requests", "errors", "error_rate", "input_tokens", "output_tokens", "cost_usd",
           "latency_p50", "latency_p95", "latency_p99")
# API name -> column; the only identifiers ever formatted into SQL besides table names.
DIMENSIONS = {"model": "model", "provider": "provider", "service": "service_name", "operation": "operation",
              "prompt": "prompt_name", "user": "user_id", "session": "session_id"}
RAW_ONLY = {"user", "session"}
MAX_POINTS = 2000
TARGET_POINTS = 300
NICE_INTERVALS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
_FMT = "%Y-%m-%d %H:%M:%S"
MINUTES_ONLY = timedelta(days=1, minutes=1)  # a day, widened to whole minutes at both ends

Source = Literal["rollups", "spans"]


@dataclass(frozen=True)
class Question:
    tenant: str
    start: datetime
    end: datetime
    filters: Mapping[str, str]  # spans-table column -> value
    interval: int | None  # seconds per bucket; None = one bucket for the whole range
    group: str | None  # API dimension name
    model_calls: bool = True  # only model calls count (schemas/operations.py); no `operation` filter was given

    @property
    def counted(self) -> str:
        """Which spans the figures count, as the responses say it."""
        if self.model_calls:
            return "model_calls"
        return f"operation:{self.filters['operation']}" if "operation" in self.filters else "all_spans"

    @property
    def raw(self) -> bool:
        """Answered from the spans: a filter or the grouping is not in the rollup key."""
        return any(c not in ROLLUP_DIMENSIONS for c in self.filters) or self.group in RAW_ONLY


def question(
    tenant: str, start: datetime, end: datetime, filters: Mapping[str, str], interval: int | None, group: str | None
) -> Question:
    """The question over [start, end) widened to whole minutes, the finest rollup. Without an
    `operation` filter only model calls count; `operation=*` counts every span."""
    given = dict(filters)
    operation = given.pop("operation", None)
    if operation is not None and operation != ALL_OPERATIONS:
        given["operation"] = operation
    return Question(tenant, floor_to(start, 60), ceil_to(end, 60), given, interval, group, operation is None)


def default_interval(span: timedelta) -> int:
    """The smallest nice interval that gives at most TARGET_POINTS buckets."""
    return next((s for s in NICE_INTERVALS if span / timedelta(seconds=s) <= TARGET_POINTS), NICE_INTERVALS[-1])


def plan(
    q: Question, marks: Mapping[str, datetime], now: datetime, database: str,
    order: str = "", limit: int | None = None, latency: bool = True,
) -> tuple[str, dict[str, Any], Source]:
    """(SQL, parameters, source) of one row per (t, g): counters, cost, and p50/p95/p99. `marks` are
    the compaction watermarks (level -> rows complete before).

    Merging histograms is the dearest part of the query, so `latency=False` skips it (nulls)."""
    step = q.interval or 0
    where = "".join(f" AND {c} = {{f_{c}:String}}" for c in q.filters)
    if q.model_calls:
        where += f" AND {model_call_sql()}"
    params: dict[str, Any] = {f"f_{c}": v for c, v in q.filters.items()}
    params["tenant"] = q.tenant
    group_col = DIMENSIONS[q.group] if q.group else "''"
    sums = ", ".join(sum_sql(c) for c in (*COUNTERS, "cost_usd"))

    def bucket(ts: str) -> str:
        return f"intDiv(toUnixTimestamp({ts}), {step}) * {step}" if step else "0"

    parts = []
    if q.raw:
        source: Source = "spans"
        params |= {"lo0": q.start.strftime(_FMT), "hi0": q.end.strftime(_FMT)}
        parts.append(f"""
            SELECT {bucket("toDateTime(start_time)")} AS t, {group_col} AS g, {span_aggregates_sql("s", latency)}
            FROM {database}.spans AS s FINAL
            WHERE tenant_id = {{tenant:String}} AND start_time >= {{lo0:DateTime64(9, 'UTC')}}
              AND start_time < {{hi0:DateTime64(9, 'UTC')}}{where}
            GROUP BY t, g""")
    else:
        source = "rollups"
        # Each level's segment is a subquery of its own, and planning one costs more than reading a
        # day of minutes (which a day's timeseries in 5-minute buckets reads anyway): a 24 h summary
        # took 40 ms p50 from three levels, 16 ms from the minutes alone (10M spans of bench/seed_spans.py).
        # Only within the last day: the minutes' TTL is the retention when their table was created (a day
        # or more), so older minutes may be gone where the hours still hold them.
        coarse = q.end - q.start > MINUTES_ONLY or q.start < now - MINUTES_ONLY
        levels = [(table, col, s, marks.get(col, EPOCH) if col != "minute" else q.end)
                  for table, col, s in ROLLUP_LEVELS if (not step or step % s == 0) and (coarse or col == "minute")]
        for i, (table, col, lo, hi) in enumerate(segments(q.start, q.end, levels)):
            params |= {f"lo{i}": lo.strftime(_FMT), f"hi{i}": hi.strftime(_FMT)}
            parts.append(f"""
            SELECT {bucket(col)} AS t, {group_col} AS g, {sums}, {"sumMap(latency_hist)" if latency else "0"} AS latency_hist
            FROM {database}.{table} FINAL
            WHERE tenant_id = {{tenant:String}} AND {col} >= {{lo{i}:DateTime('UTC')}}
              AND {col} < {{hi{i}:DateTime('UTC')}}{where}
            GROUP BY t, g""")
    quantiles = ", ".join(
        f"{quantile_sql('h', v) if latency else 'CAST(NULL AS Nullable(Float64))'} AS {k}" for k, v in QUANTILES.items()
    )
    sql = f"""
        {"WITH sumMap(latency_hist) AS h" if latency else ""}
        SELECT toInt64(t) AS t, toString(g) AS g, {", ".join(sum_sql(c) for c in COUNTERS)},
               toFloat64(sum(cost_usd)) AS cost_usd, {quantiles}
        FROM ({" UNION ALL ".join(parts)})
        GROUP BY t, g
        {order} {"LIMIT {limit:UInt32}" if limit else ""}
    """
    if limit:
        params["limit"] = limit
    return sql, params, source


def finish(df: pl.DataFrame) -> pl.DataFrame:
    """Derived metrics; an empty bucket has zero counts and null latency; unknown cost is null, not 0."""
    return df.with_columns(
        error_rate=pl.when(pl.col("requests") > 0).then(pl.col("errors") / pl.col("requests")).otherwise(0.0),
        cost_usd=pl.when((pl.col("cost_known") > 0) | (pl.col("requests") == 0))
        .then(pl.col("cost_usd").cast(pl.Float64))
        .otherwise(None),
    )


def empty_frame() -> pl.DataFrame:
    """The one row of a question nothing matched: zero counts and cost, no latency."""
    schema = {**{c: pl.UInt64 for c in COUNTERS}, "cost_usd": pl.Float64, **{k: pl.Float64 for k in QUANTILES}}
    return pl.DataFrame([{**{c: 0 for c in COUNTERS}, "cost_usd": 0.0, **{k: None for k in QUANTILES}}], schema=schema)
