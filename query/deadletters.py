"""Dead letters: what the worker could not store, and why (admin scope, the caller's tenant only).

The rows hold where a message or span came from and the reason, never its content: it was parked
before (or because) enrichment ran, so it is unredacted. The content itself waits in the
dead-letter topic, with the same reason in its headers, for whoever repairs and replays it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from llmscope.errors import BadRequest
from llmscope.storage import Store
from query.deps import Admin, StoreDep
from query.envelope import Page
from schemas.times import from_ns

router = APIRouter(prefix="/api/v1/admin/dead-letters", tags=["admin"])


class DeadLetterOut(BaseModel):
    parked_at: datetime
    received_at: datetime
    message_id: str
    item: int | None = Field(description="Index of the span or event within its message; null when the whole message was parked.")
    trace_id: str | None
    span_id: str | None
    format: str
    source: str = Field(description="topic/partition/offset it was read from.")
    reason: str
    size_bytes: int


class DeadLetterPage(Page[DeadLetterOut]):
    pass


def _cursor(parked_ms: int, message_id: str, item: int) -> str:
    return base64.urlsafe_b64encode(f"{parked_ms}:{item}:{message_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, int, str]:
    try:
        parked, item, message_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":", 2)
        return int(parked), int(item), message_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged") from None


@router.get("", response_model=DeadLetterPage, summary="Recent dead letters with their reasons, newest first")
async def list_dead_letters(
    principal: Admin, store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> DeadLetterPage:
    params: dict[str, object] = {"tenant": principal.tenant_id, "limit": limit + 1}
    after = ""
    if cursor:
        params["c_ms"], params["c_item"], params["c_id"] = _decode(cursor)
        after = "AND (parked_ms, message_id, item) < ({c_ms:Int64}, {c_id:String}, {c_item:Int32})"
    rows = (await store.aquery(
        f"""
        SELECT toUnixTimestamp64Milli(parked_at) AS parked_ms, toUnixTimestamp64Nano(received_at) AS received_ns,
               message_id, item, trace_id, span_id, format, source, reason, size_bytes
        FROM {store.database}.dead_letters FINAL
        WHERE tenant_id = {{tenant:String}} {after}
        ORDER BY parked_ms DESC, message_id DESC, item DESC
        LIMIT {{limit:UInt32}}
        """,
        params,
    )).to_dicts()
    page = rows[:limit]
    items = [
        DeadLetterOut(
            parked_at=datetime.fromtimestamp(r["parked_ms"] / 1000, timezone.utc),
            received_at=from_ns(r["received_ns"]),
            message_id=r["message_id"], item=None if r["item"] < 0 else r["item"],
            trace_id=r["trace_id"] or None, span_id=r["span_id"] or None, format=r["format"], source=r["source"],
            reason=r["reason"], size_bytes=r["size_bytes"],
        )
        for r in page
    ]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _cursor(last["parked_ms"], last["message_id"], last["item"])
    return DeadLetterPage(data=items, next_cursor=next_cursor)


def recent_count(store: Store, hours: int = 24) -> int:
    """Dead letters parked in the last `hours`, all tenants: a number for readiness pages."""
    df = store.query(
        f"SELECT count() AS n FROM {store.database}.dead_letters FINAL WHERE parked_at >= now() - INTERVAL {int(hours)} HOUR"
    )
    return int(df["n"][0])
