"""Anomalies: the episodes the worker's detectors found (schemas/anomalies.py), newest first, with
filters and cursor pagination."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from llmscope.errors import BadRequest
from query.deps import Reader, StoreDep, TimeRange
from query.envelope import Page
from schemas.anomalies import ANOMALIES, AnomalyMetric, AnomalyStatus
from schemas.times import from_ns

router = APIRouter(prefix="/api/v1/anomalies", tags=["anomalies"])
_EPISODE_ID = re.compile(r"^[0-9a-f]{32}$")


class AnomalyOut(BaseModel):
    """One anomaly episode of one metric of one series, as it stands now."""

    episode_id: str
    overall: bool = Field(description="The tenant's whole traffic rather than one (service, provider, model).")
    service: str | None = Field(description="Null for the tenant overall; likewise provider and model.")
    provider: str | None
    model: str | None
    metric: AnomalyMetric = Field(description="requests and cost_usd per minute, error_rate as a fraction, "
                                              "latency_p95_ms, tokens_per_request.")
    direction: str = Field(description="up or down: latency, errors, cost and tokens are only anomalous upwards.")
    status: AnomalyStatus
    started_at: datetime = Field(description="The first abnormal minute.")
    ended_at: datetime | None = Field(description="The first minute back to normal; null while open.")
    observed: float | None = Field(description="The metric in the minute last judged for this episode.")
    expected: float | None = Field(description="What the baseline expected in that minute.")
    score: float | None = Field(description="Robust standard deviations from the baseline in that minute.")
    peak_at: datetime = Field(description="The minute of the largest score.")
    peak_score: float
    peak_observed: float
    peak_expected: float
    updated_at: datetime


class AnomalyPage(Page[AnomalyOut]):
    pass


def _encode_cursor(started_s: int, episode_id: str) -> str:
    return base64.urlsafe_b64encode(f"{started_s}:{episode_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        started, episode_id = raw.split(":", 1)
        if not _EPISODE_ID.match(episode_id):
            raise ValueError
        return int(started), episode_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged") from None


@router.get("", response_model=AnomalyPage, summary="List anomaly episodes, newest first")
async def list_anomalies(
    principal: Reader,
    store: StoreDep,
    window: Annotated[TimeRange, Depends()],
    service: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    metric: AnomalyMetric | None = None,
    status: AnomalyStatus | None = None,
    overall: Annotated[bool | None, Query(description="true: only the tenant's whole traffic; false: only "
                                                        "(service, provider, model) series.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> AnomalyPage:
    """Episodes that overlap [start, end): started before `end` and still open or ended after `start`."""
    params: dict[str, Any] = {"tenant": principal.tenant_id, **window.params(), "limit": limit + 1}
    # What never changes within an episode is filtered before FINAL; its status and end after.
    fixed = ["tenant_id = {tenant:String}", "started_at < {end:DateTime64(9, 'UTC')}"]
    for column, value in (("service_name", service), ("provider", provider), ("model", model), ("metric", metric)):
        if value is not None:
            params[column] = value
            fixed.append(f"{column} = {{{column}:String}}")
    if overall is not None:
        params["overall"] = int(overall)
        fixed.append("is_overall = {overall:UInt8}")
    current = ["(ended_at IS NULL OR ended_at > {start:DateTime64(9, 'UTC')})"]
    if status is not None:
        params["status"] = status
        current.append("status = {status:String}")
    if cursor:
        params["cursor_s"], params["cursor_id"] = _decode_cursor(cursor)
        current.append("(started_s, episode_id) < ({cursor_s:Int64}, {cursor_id:String})")
    sql = f"""
        SELECT * FROM (
            SELECT episode_id, is_overall, service_name, provider, model, metric, direction, status,
                   toUnixTimestamp(started_at) AS started_s, ended_at, observed, expected, score, peak_at,
                   peak_score, peak_observed, peak_expected, toUnixTimestamp64Nano(updated_at) AS updated_ns
            FROM {store.database}.{ANOMALIES} FINAL
            WHERE {" AND ".join(fixed)}
        )
        WHERE {" AND ".join(current)}
        ORDER BY started_s DESC, episode_id DESC
        LIMIT {{limit:UInt32}}
    """
    rows = (await store.aquery(sql, params)).to_dicts()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1]["started_s"], page[-1]["episode_id"]) if more and page else None
    return AnomalyPage(data=[_episode(r) for r in page], next_cursor=next_cursor)


def _episode(r: dict[str, Any]) -> AnomalyOut:
    overall = bool(r["is_overall"])
    return AnomalyOut(
        episode_id=r["episode_id"], overall=overall,
        service=None if overall else r["service_name"], provider=None if overall else r["provider"],
        model=None if overall else r["model"], metric=r["metric"], direction=r["direction"], status=r["status"],
        started_at=from_ns(r["started_s"] * 1_000_000_000), ended_at=r["ended_at"], observed=r["observed"],
        expected=r["expected"], score=r["score"], peak_at=r["peak_at"], peak_score=r["peak_score"],
        peak_observed=r["peak_observed"], peak_expected=r["peak_expected"], updated_at=from_ns(r["updated_ns"]),
    )
