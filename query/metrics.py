"""Analytics API: summary, timeseries and breakdown over rollups (user/session questions over spans).
What answers each question, and how it stays exact, is the planner's (query/analytics.py); these
routes read the compaction watermarks, run the planned statement, cache the answer and shape it."""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from llmscope.auth import Principal
from llmscope.errors import BadRequest
from llmscope.storage import Store
from query.analytics import (
    DIMENSIONS,
    MAX_POINTS,
    METRICS,
    QUANTILES,
    Question,
    Source,
    default_interval,
    empty_frame,
    finish,
    plan,
    question,
)
from query.cache import ResultCache
from query.deps import Reader, SpanFilters, StoreDep, TimeRange
from query.envelope import Envelope
from schemas.rollup import COUNTERS, RELATIVE_ERROR, read_watermarks
from schemas.times import floor_to

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


COUNTED = Field(description=(
    "Which spans the figures count: `model_calls` (the default: spans whose operation is an inference "
    "operation, chat, text_completion, generate_content, embeddings or OpenInference's llm, or that name a "
    "model without stating an operation), `operation:<name>` (the `operation` filter) or `all_spans` (`operation=*`)."
))
REQUESTS = Field(description="Counted spans (see `counted`): by default, model calls, not the agent, tool or "
                             "workflow spans around them.")
ERRORS = Field(description="Counted spans whose status is error.")
ERROR_RATE = Field(description="errors / requests; 0 when there are no requests.")
COST = Field(description="Sum of the counted spans' known costs in USD; null when none of them has a known cost "
                         "(no usage reported, or no price for the model).")
LATENCY = "of the counted spans' durations, in ms, within `latency_relative_error`"


class Summary(BaseModel):
    start: datetime
    end: datetime
    source: Source
    counted: str = COUNTED
    requests: int = REQUESTS
    errors: int = ERRORS
    error_rate: float = ERROR_RATE
    input_tokens: int = Field(description="Sum over the counted spans; includes cached and cache-write input tokens.")
    output_tokens: int = Field(description="Sum over the counted spans; includes reasoning tokens.")
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None = COST
    cost_known_requests: int = Field(description="Counted spans with a known cost.")
    latency_avg_ms: float | None = Field(description="Mean of the counted spans' durations, in ms (exact).")
    latency_p50_ms: float | None = Field(description=f"Median {LATENCY}.")
    latency_p95_ms: float | None = Field(description=f"95th percentile {LATENCY}.")
    latency_p99_ms: float | None = Field(description=f"99th percentile {LATENCY}.")
    latency_relative_error: float


class SummaryResponse(Envelope[Summary]):
    pass


class Series(BaseModel):
    group: str | None
    values: dict[str, list[float | None]] = Field(description=(
        "metric -> one value per timestamp, each over the counted spans (see `counted`) that started in that "
        "bucket: requests and errors count them, tokens and cost_usd sum theirs, latency_* are their percentiles."))


class Timeseries(BaseModel):
    start: datetime
    end: datetime
    interval_seconds: int
    metrics: list[str]
    group_by: str | None
    source: Source
    counted: str = COUNTED
    latency_relative_error: float
    timestamps: list[datetime]
    series: list[Series]


class TimeseriesResponse(Envelope[Timeseries]):
    pass


class BreakdownItem(BaseModel):
    key: str
    value: float | None
    requests: int = REQUESTS
    errors: int = ERRORS
    error_rate: float = ERROR_RATE
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = COST
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class Breakdown(BaseModel):
    start: datetime
    end: datetime
    dimension: str
    metric: str
    source: Source
    counted: str = COUNTED
    latency_relative_error: float
    items: list[BreakdownItem]


class BreakdownResponse(Envelope[Breakdown]):
    pass


class Watermarks:
    """The compaction watermarks of one store, re-read at most every `ttl` seconds: one per app
    (`app.state.watermarks`). A stale watermark is safe: it only moves forward, and minute rollups
    cover the gap."""

    def __init__(self, store: Store, ttl: float = 1.0) -> None:
        self._store, self._ttl = store, ttl
        self._marks: dict[str, datetime] = {}
        self._until = 0.0

    async def get(self) -> dict[str, datetime]:
        if time.monotonic() >= self._until:
            marks = await asyncio.to_thread(read_watermarks, self._store)
            self._marks, self._until = {level: covered for level, (covered, _) in marks.items()}, time.monotonic() + self._ttl
        return self._marks


async def _frame(
    request: Request, store: Store, q: Question, order: str = "", limit: int | None = None, latency: bool = True
) -> tuple[pl.DataFrame, Source]:
    """One row per (t, g) (see analytics.plan), and which source answered."""
    marks = await request.app.state.watermarks.get() if not q.raw else {}
    sql, params, source = plan(q, marks, datetime.now(timezone.utc), store.database, order, limit, latency)
    return await store.aquery(sql, params), source


def _question(principal: Principal, window: TimeRange, filters: SpanFilters, interval: int | None, group: str | None) -> Question:
    return question(principal.tenant_id, window.start, window.end, filters.given(), interval, group)


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
    return {"start": q.start.isoformat(), "end": q.end.isoformat(), "filters": dict(q.filters), "counted": q.counted,
            **extra}


@router.get("/summary", response_model=SummaryResponse, summary="Totals and latency percentiles over a range")
async def summary(request: Request, principal: Reader, store: StoreDep,
                  window: Annotated[TimeRange, Depends()], filters: Annotated[SpanFilters, Depends()]) -> Response:
    q = _question(principal, window, filters, None, None)

    async def compute() -> bytes:
        df, source = await _frame(request, store, q)
        row = finish(df if df.height else empty_frame()).to_dicts()[0]
        n = row["requests"]
        data = Summary(
            start=q.start, end=q.end, source=source, counted=q.counted, requests=n, errors=row["errors"], error_rate=row["error_rate"],
            input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
            cached_input_tokens=row["cached_input_tokens"], cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"], cost_usd=row["cost_usd"], cost_known_requests=row["cost_known"],
            latency_avg_ms=float(row["duration_ns_sum"]) / n / 1e6 if n else None,
            latency_p50_ms=row["latency_p50"], latency_p95_ms=row["latency_p95"], latency_p99_ms=row["latency_p99"],
            latency_relative_error=RELATIVE_ERROR,
        )
        return SummaryResponse(data=data).model_dump_json().encode()

    return await _cached(request, q.tenant, "summary", _key(q), q.end, compute)


@router.get("/timeseries", response_model=TimeseriesResponse, summary="Metrics per time bucket, optionally per group")
async def timeseries(
    request: Request, principal: Reader, store: StoreDep,
    window: Annotated[TimeRange, Depends()], filters: Annotated[SpanFilters, Depends()],
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
        step = default_interval(span)
    q = _question(principal, window, filters, step, group)
    first = floor_to(q.start, step)
    points = math.ceil((q.end - first) / timedelta(seconds=step))
    if points > MAX_POINTS:
        raise BadRequest(f"{points} points requested; at most {MAX_POINTS}: widen the interval or narrow the range")

    async def compute() -> bytes:
        df, source = await _frame(request, store, q, latency=any(m in QUANTILES for m in metrics))
        times = pl.DataFrame({"t": [int(first.timestamp()) + i * step for i in range(points)]}, schema={"t": pl.Int64})
        groups = (df.group_by("g").agg(pl.col("requests").sum().alias("n")).sort(["n", "g"], descending=[True, False])
                  .head(limit).select("g")) if group else pl.DataFrame({"g": [""]})
        grid = times.join(groups, how="cross").join(df, on=["t", "g"], how="left")
        filled = finish(grid.with_columns(pl.col(*COUNTERS).fill_null(0), pl.col("cost_usd").cast(pl.Float64).fill_null(0.0)))
        series = []
        for (g,), part in filled.sort("t").partition_by("g", as_dict=True, maintain_order=True).items():
            values = {m: part[m].to_list() for m in metrics}
            series.append(Series(group=g if group else None, values=values))
        if group:
            order = {g: i for i, g in enumerate(groups["g"].to_list())}
            series.sort(key=lambda s: order[s.group])
        data = Timeseries(
            start=q.start, end=q.end, interval_seconds=step, metrics=metrics, group_by=group, source=source,
            counted=q.counted, latency_relative_error=RELATIVE_ERROR,
            timestamps=[datetime.fromtimestamp(t, timezone.utc) for t in times["t"].to_list()], series=series,
        )
        return TimeseriesResponse(data=data).model_dump_json().encode()

    key = _key(q, metrics=metrics, interval=step, group_by=group, limit=limit)
    return await _cached(request, q.tenant, "timeseries", key, q.end, compute)


@router.get("/breakdown", response_model=BreakdownResponse, summary="Top values of a dimension by a metric")
async def breakdown(
    request: Request, principal: Reader, store: StoreDep,
    window: Annotated[TimeRange, Depends()], filters: Annotated[SpanFilters, Depends()],
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
        df, source = await _frame(request, store, q, order, limit)
        items = []
        for r in finish(df).to_dicts():
            value = r[metric]
            items.append(BreakdownItem(
                key=r["g"], value=None if value is None else float(value), requests=r["requests"], errors=r["errors"],
                error_rate=r["error_rate"], input_tokens=r["input_tokens"], output_tokens=r["output_tokens"],
                cost_usd=r["cost_usd"], latency_p50_ms=r["latency_p50"], latency_p95_ms=r["latency_p95"],
                latency_p99_ms=r["latency_p99"],
            ))
        data = Breakdown(start=q.start, end=q.end, dimension=group, metric=metric, source=source, counted=q.counted,
                         latency_relative_error=RELATIVE_ERROR, items=items)
        return BreakdownResponse(data=data).model_dump_json().encode()

    key = _key(q, dimension=group, metric=metric, limit=limit)
    return await _cached(request, q.tenant, "breakdown", key, q.end, compute)

