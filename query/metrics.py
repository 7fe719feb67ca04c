"""Analytics API: summary, timeseries and breakdown over rollups (user/session questions over spans).

Each request is answered by one SQL statement that UNIONs disjoint time segments: closed days from
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

import asyncio
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from llmscope.auth import Principal
from llmscope.errors import BadRequest
from llmscope.storage import Store
from query.cache import ResultCache
from query.deps import Reader, StoreDep, TimeRange
from schemas.rollup import (
    COUNTERS,
    RELATIVE_ERROR,
    ROLLUP_DAY,
    ROLLUP_HOUR,
    ROLLUP_MINUTE,
    bucket_sql,
    quantile_sql,
    read_watermarks,
)
from schemas.times import EPOCH, ceil_to, floor_to

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])

METRICS = ("requests", "errors", "error_rate", "input_tokens", "output_tokens", "cost_usd",
           "latency_p50", "latency_p95", "latency_p99")
# API name -> column; the only identifiers ever formatted into SQL besides table names.
DIMENSIONS = {"model": "model", "provider": "provider", "service": "service_name", "operation": "operation",
              "prompt": "prompt_name", "user": "user_id", "session": "session_id"}
RAW_ONLY = {"user", "session"}
MAX_POINTS = 2000
TARGET_POINTS = 300
NICE_INTERVALS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
_LEVELS = ((ROLLUP_DAY, "day", 86400), (ROLLUP_HOUR, "hour", 3600), (ROLLUP_MINUTE, "minute", 60))
_FMT = "%Y-%m-%d %H:%M:%S"


class Filters:
    def __init__(
        self,
        service: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        status: Literal["ok", "error", "unset"] | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        prompt_name: str | None = None,
    ) -> None:
        self.columns = {"service_name": service, "provider": provider, "model": model, "status_code": status,
                        "prompt_name": prompt_name, "user_id": user_id, "session_id": session_id}
        self.raw = user_id is not None or session_id is not None

    def given(self) -> dict[str, str]:
        return {c: v for c, v in self.columns.items() if v is not None}

    def sql(self) -> tuple[str, dict[str, str]]:
        given = self.given()
        return "".join(f" AND {c} = {{f_{c}:String}}" for c in given), {f"f_{c}": v for c, v in given.items()}


class Summary(BaseModel):
    start: datetime
    end: datetime
    source: Literal["rollups", "spans"]
    requests: int
    errors: int
    error_rate: float
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    cost_known_requests: int
    latency_avg_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_relative_error: float


class SummaryResponse(BaseModel):
    data: Summary
    next_cursor: None = None


class Series(BaseModel):
    group: str | None
    values: dict[str, list[float | None]]


class Timeseries(BaseModel):
    start: datetime
    end: datetime
    interval_seconds: int
    metrics: list[str]
    group_by: str | None
    source: Literal["rollups", "spans"]
    latency_relative_error: float
    timestamps: list[datetime]
    series: list[Series]


class TimeseriesResponse(BaseModel):
    data: Timeseries
    next_cursor: None = None


class BreakdownItem(BaseModel):
    key: str
    value: float | None
    requests: int
    errors: int
    error_rate: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class Breakdown(BaseModel):
    start: datetime
    end: datetime
    dimension: str
    metric: str
    source: Literal["rollups", "spans"]
    latency_relative_error: float
    items: list[BreakdownItem]


class BreakdownResponse(BaseModel):
    data: Breakdown
    next_cursor: None = None


@dataclass(frozen=True)
class Question:
    tenant: str
    start: datetime
    end: datetime
    filters: Filters
    interval: int | None  # seconds per bucket; None = one bucket for the whole range
    group: str | None  # API dimension name

    @property
    def raw(self) -> bool:
        return self.filters.raw or self.group in RAW_ONLY


def _segments(lo: datetime, hi: datetime, levels: list[tuple[str, str, int, datetime]]) -> list[tuple[str, str, datetime, datetime]]:
    """Split [lo, hi) into disjoint runs, each answered by the coarsest level that covers it exactly."""
    if lo >= hi or not levels:
        return []
    (table, col, step, watermark), rest = levels[0], levels[1:]
    a, b = ceil_to(lo, step), min(floor_to(hi, step), watermark)
    if a >= b:
        return _segments(lo, hi, rest)
    return _segments(lo, a, rest) + [(table, col, a, b)] + _segments(b, hi, rest)


_MARKS: dict[int, tuple[float, dict[str, datetime]]] = {}
MARKS_TTL = 1.0  # seconds; a stale watermark is safe (it only moves forward, minutes cover the gap)


async def _watermarks(store: Store) -> dict[str, datetime]:
    cached = _MARKS.get(id(store))
    if cached and cached[0] > time.monotonic():
        return cached[1]
    marks = {level: covered for level, (covered, _) in (await asyncio.to_thread(read_watermarks, store)).items()}
    _MARKS[id(store)] = (time.monotonic() + MARKS_TTL, marks)
    return marks


async def _frame(
    store: Store, q: Question, order: str = "", limit: int | None = None, latency: bool = True
) -> tuple[pl.DataFrame, Literal["rollups", "spans"]]:
    """One row per (t, g): counters, cost, and p50/p95/p99; plus which source answered.

    Merging histograms is the dearest part of the query, so `latency=False` skips it (nulls)."""
    step = q.interval or 0
    where, filter_params = q.filters.sql()
    params: dict[str, Any] = dict(filter_params)
    params["tenant"] = q.tenant
    group_col = DIMENSIONS[q.group] if q.group else "''"
    sums = ", ".join(f"sum({c}) AS {c}" for c in (*COUNTERS, "cost_usd"))

    def bucket(ts: str) -> str:
        return f"intDiv(toUnixTimestamp({ts}), {step}) * {step}" if step else "0"

    parts = []
    if q.raw:
        source: Literal["rollups", "spans"] = "spans"
        params |= {"lo0": q.start.strftime(_FMT), "hi0": q.end.strftime(_FMT)}
        parts.append(f"""
            SELECT {bucket("toDateTime(start_time)")} AS t, {group_col} AS g, count() AS requests,
                countIf(status_code = 'error') AS errors, sum(input_tokens) AS input_tokens,
                sum(output_tokens) AS output_tokens, sum(cached_input_tokens) AS cached_input_tokens,
                sum(cache_write_tokens) AS cache_write_tokens, sum(reasoning_tokens) AS reasoning_tokens,
                count(s.cost_usd) AS cost_known, sum(duration_ns) AS duration_ns_sum,
                sum(coalesce(s.cost_usd, toDecimal128(0, 12))) AS cost_usd,
                {f'sumMap(map({bucket_sql("duration_ns")}, toUInt64(1)))' if latency else "0"} AS latency_hist
            FROM {store.database}.spans AS s FINAL
            WHERE tenant_id = {{tenant:String}} AND start_time >= {{lo0:DateTime64(9, 'UTC')}}
              AND start_time < {{hi0:DateTime64(9, 'UTC')}}{where}
            GROUP BY t, g""")
    else:
        source = "rollups"
        marks = await _watermarks(store)
        levels = [(table, col, s, marks.get(col, EPOCH) if col != "minute" else q.end)
                  for table, col, s in _LEVELS if not step or step % s == 0]
        for i, (table, col, lo, hi) in enumerate(_segments(q.start, q.end, levels)):
            params |= {f"lo{i}": lo.strftime(_FMT), f"hi{i}": hi.strftime(_FMT)}
            parts.append(f"""
            SELECT {bucket(col)} AS t, {group_col} AS g, {sums}, {"sumMap(latency_hist)" if latency else "0"} AS latency_hist
            FROM {store.database}.{table} FINAL
            WHERE tenant_id = {{tenant:String}} AND {col} >= {{lo{i}:DateTime('UTC')}}
              AND {col} < {{hi{i}:DateTime('UTC')}}{where}
            GROUP BY t, g""")
    quantiles = ", ".join(
        f"{quantile_sql('h', v) if latency else 'CAST(NULL AS Nullable(Float64))'} AS {k}" for k, v in _QUANTILES.items()
    )
    sql = f"""
        {"WITH sumMap(latency_hist) AS h" if latency else ""}
        SELECT toInt64(t) AS t, toString(g) AS g, {sums}, {quantiles}
        FROM ({" UNION ALL ".join(parts)})
        GROUP BY t, g
        {order} {"LIMIT {limit:UInt32}" if limit else ""}
    """
    if limit:
        params["limit"] = limit
    return await store.aquery(sql, params), source


def _finish(df: pl.DataFrame) -> pl.DataFrame:
    """Derived metrics; an empty bucket has zero counts and null latency; unknown cost is null, not 0."""
    return df.with_columns(
        error_rate=pl.when(pl.col("requests") > 0).then(pl.col("errors") / pl.col("requests")).otherwise(0.0),
        cost_usd=pl.when((pl.col("cost_known") > 0) | (pl.col("requests") == 0))
        .then(pl.col("cost_usd").cast(pl.Float64))
        .otherwise(None),
    )


_SCHEMA = {**{c: pl.UInt64 for c in COUNTERS}, "cost_usd": pl.Float64, **{k: pl.Float64 for k in _QUANTILES}}


def _empty_row() -> dict[str, Any]:
    return {**{c: 0 for c in COUNTERS}, "cost_usd": 0.0, **{k: None for k in _QUANTILES}}


def _question(principal: Principal, window: TimeRange, filters: Filters, interval: int | None, group: str | None) -> Question:
    return Question(principal.tenant_id, floor_to(window.start, 60), ceil_to(window.end, 60), filters, interval, group)


def _parse_interval(text: str) -> int:
    m = re.fullmatch(r"(\d{1,9})([smhd]?)", text.strip())
    if not m:
        raise BadRequest("interval must be a number of seconds or like 5m, 1h, 1d")
    seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 60 or seconds % 60:
        raise BadRequest("interval must be a whole number of minutes (at least 60 seconds)")
    return seconds


def _dimension(name: str | None, what: str) -> str | None:
    if name is not None and name not in DIMENSIONS:
        raise BadRequest(f"unknown {what} '{name}'; use one of {', '.join(DIMENSIONS)}")
    return name


def _metric(name: str) -> str:
    if name not in METRICS:
        raise BadRequest(f"unknown metric '{name}'; use one of {', '.join(METRICS)}")
    return name


async def _cached(request: Request, tenant: str, endpoint: str, key: dict[str, Any],
                  end: datetime, compute: Any) -> Response:
    cache: ResultCache = request.app.state.cache
    if "no-cache" in request.headers.get("cache-control", "").lower():
        # A client that must see the latest writes (a freshness probe, a test) asks for it.
        return Response(await compute(), media_type="application/json", headers={"x-cache": "bypass"})
    body, hit = await cache.get_or_compute(cache.key(tenant, endpoint, key), cache.ttl_for(end), compute)
    return Response(body, media_type="application/json", headers={"x-cache": "hit" if hit else "miss"})


def _key(q: Question, **extra: Any) -> dict[str, Any]:
    return {"start": q.start.isoformat(), "end": q.end.isoformat(), "filters": q.filters.given(), **extra}


@router.get("/summary", response_model=SummaryResponse, summary="Totals and latency percentiles over a range")
async def summary(request: Request, principal: Reader, store: StoreDep,
                  window: Annotated[TimeRange, Depends()], filters: Annotated[Filters, Depends()]) -> Response:
    q = _question(principal, window, filters, None, None)

    async def compute() -> bytes:
        df, source = await _frame(store, q)
        row = _finish(df if df.height else pl.DataFrame([_empty_row()], schema=_SCHEMA)).to_dicts()[0]
        n = row["requests"]
        data = Summary(
            start=q.start, end=q.end, source=source, requests=n, errors=row["errors"], error_rate=row["error_rate"],
            input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
            cached_input_tokens=row["cached_input_tokens"], cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"], cost_usd=row["cost_usd"], cost_known_requests=row["cost_known"],
            latency_avg_ms=row["duration_ns_sum"] / n / 1e6 if n else None,
            latency_p50_ms=row["latency_p50"], latency_p95_ms=row["latency_p95"], latency_p99_ms=row["latency_p99"],
            latency_relative_error=RELATIVE_ERROR,
        )
        return SummaryResponse(data=data).model_dump_json().encode()

    return await _cached(request, q.tenant, "summary", _key(q), q.end, compute)


@router.get("/timeseries", response_model=TimeseriesResponse, summary="Metrics per time bucket, optionally per group")
async def timeseries(
    request: Request, principal: Reader, store: StoreDep,
    window: Annotated[TimeRange, Depends()], filters: Annotated[Filters, Depends()],
    metric: Annotated[list[str] | None, Query(description=f"Repeatable; one of {', '.join(METRICS)}.")] = None,
    interval: Annotated[str | None, Query(description="Bucket size: seconds or 5m/1h/1d; default ≤300 points.")] = None,
    group_by: Annotated[str | None, Query(description=f"One of {', '.join(DIMENSIONS)}.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Most groups returned (by requests).")] = 10,
) -> Response:
    metrics = list(dict.fromkeys(_metric(m) for m in (metric or ["requests"])))
    group = _dimension(group_by, "group_by")
    span = window.end - window.start
    if interval is not None:
        step = _parse_interval(interval)
    else:
        step = next((s for s in NICE_INTERVALS if span / timedelta(seconds=s) <= TARGET_POINTS), NICE_INTERVALS[-1])
    q = _question(principal, window, filters, step, group)
    first = floor_to(q.start, step)
    points = math.ceil((q.end - first) / timedelta(seconds=step))
    if points > MAX_POINTS:
        raise BadRequest(f"{points} points requested; at most {MAX_POINTS}: widen the interval or narrow the range")

    async def compute() -> bytes:
        df, source = await _frame(store, q, latency=any(m in _QUANTILES for m in metrics))
        times = pl.DataFrame({"t": [int(first.timestamp()) + i * step for i in range(points)]}, schema={"t": pl.Int64})
        groups = (df.group_by("g").agg(pl.col("requests").sum().alias("n")).sort(["n", "g"], descending=[True, False])
                  .head(limit).select("g")) if group else pl.DataFrame({"g": [""]})
        grid = times.join(groups, how="cross").join(df, on=["t", "g"], how="left")
        filled = _finish(grid.with_columns(pl.col(*COUNTERS).fill_null(0), pl.col("cost_usd").cast(pl.Float64).fill_null(0.0)))
        series = []
        for (g,), part in filled.sort("t").partition_by("g", as_dict=True, maintain_order=True).items():
            values = {m: part[m].to_list() for m in metrics}
            series.append(Series(group=g if group else None, values=values))
        if group:
            order = {g: i for i, g in enumerate(groups["g"].to_list())}
            series.sort(key=lambda s: order[s.group])
        data = Timeseries(
            start=q.start, end=q.end, interval_seconds=step, metrics=metrics, group_by=group, source=source,
            latency_relative_error=RELATIVE_ERROR,
            timestamps=[datetime.fromtimestamp(t, timezone.utc) for t in times["t"].to_list()], series=series,
        )
        return TimeseriesResponse(data=data).model_dump_json().encode()

    key = _key(q, metrics=metrics, interval=step, group_by=group, limit=limit)
    return await _cached(request, q.tenant, "timeseries", key, q.end, compute)


@router.get("/breakdown", response_model=BreakdownResponse, summary="Top values of a dimension by a metric")
async def breakdown(
    request: Request, principal: Reader, store: StoreDep,
    window: Annotated[TimeRange, Depends()], filters: Annotated[Filters, Depends()],
    dimension: Annotated[str, Query(description=f"One of {', '.join(DIMENSIONS)}.")] = "model",
    metric: Annotated[str, Query(description=f"Rank by one of {', '.join(METRICS)}.")] = "requests",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Response:
    group = _dimension(dimension, "dimension")
    assert group is not None
    metric = _metric(metric)
    q = _question(principal, window, filters, None, group)
    rank = "if(requests = 0, 0, errors / requests)" if metric == "error_rate" else metric
    order = f"ORDER BY {rank} DESC NULLS LAST, g"

    async def compute() -> bytes:
        df, source = await _frame(store, q, order, limit)
        items = []
        for r in _finish(df).to_dicts():
            value = r[metric]
            items.append(BreakdownItem(
                key=r["g"], value=None if value is None else float(value), requests=r["requests"], errors=r["errors"],
                error_rate=r["error_rate"], input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
                cost_usd=r["cost_usd"], latency_p50_ms=r["latency_p50"], latency_p95_ms=r["latency_p95"],
                latency_p99_ms=r["latency_p99"],
            ))
        data = Breakdown(start=q.start, end=q.end, dimension=group, metric=metric, source=source,
                         latency_relative_error=RELATIVE_ERROR, items=items)
        return BreakdownResponse(data=data).model_dump_json().encode()

    key = _key(q, dimension=group, metric=metric, limit=limit)
    return await _cached(request, q.tenant, "breakdown", key, q.end, compute)

