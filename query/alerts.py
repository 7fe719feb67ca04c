"""Alerts (/api/v1/alerts): the tenant's current and past alerts, each with its values (the value
that fired it, its peak, and the value at the resolve), newest first, with cursor pagination."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from llmscope.errors import BadRequest
from query.deps import Reader, StoreDep, TimeRange
from query.envelope import Page
from schemas.alert_events import AlertData
from schemas.alert_rows import decode_cursor, encode_cursor, list_alerts

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


class AlertPage(Page[AlertData]):
    pass


@router.get(
    "", response_model=AlertPage, summary="Current and past alerts",
    description="Alerts active at some time in [start, end) (default the last 24 hours; a firing alert is "
                "active until it resolves), newest fire first.",
)
async def get_alerts(
    principal: Reader,
    store: StoreDep,
    window: Annotated[TimeRange, Depends()],
    rule_id: str | None = None,
    status: Literal["firing", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AlertPage:
    position = None
    if cursor:
        position = decode_cursor(cursor)
        if position is None:
            raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged")
    found = await asyncio.to_thread(
        list_alerts, store, principal.tenant_id, window.start, window.end,
        rule_id=rule_id, status=status, cursor=position, limit=limit + 1,
    )
    page = found[:limit]
    more = len(found) > limit
    return AlertPage(data=page, next_cursor=encode_cursor(page[-1].fired_at, page[-1].alert_id) if more else None)
