"""`GET /api/v1/admin/audit`: the audit log (llmscope/audit.py), newest first (admin scope).

An `admin` key reads its own tenant's rows; a `superadmin` key reads any tenant's, or all of them
(`tenant_id` omitted), including refused requests made without a valid key (tenant empty).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel

from llmscope.errors import BadRequest
from query.deps import Admin, StoreDep, manageable, require_superadmin, within_store_range
from query.envelope import Page

router = APIRouter(prefix="/api/v1/admin/audit", tags=["admin"])


class AuditEntry(BaseModel):
    at: datetime
    tenant_id: str
    key_prefix: str
    method: str
    path: str
    action: str
    status: int
    request_id: str


class AuditPage(Page[AuditEntry]):
    pass


def _cursor(row: dict[str, Any]) -> str:
    text = orjson.dumps([row["at_ms"], row["request_id"], row["method"], row["path"]])
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        at_ms, rid, method, path = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return [int(at_ms), str(rid), str(method), str(path)]
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged") from None


@router.get("", response_model=AuditPage, summary="Mutating requests (who, what, when, request id, status), newest first")
async def list_audit(
    principal: Admin,
    store: StoreDep,
    tenant_id: Annotated[str | None, Query(max_length=64, description="Default: this key's tenant; superadmin may give any.")] = None,
    all_tenants: Annotated[bool, Query(description="Every tenant's rows, and refused requests without a tenant (superadmin).")] = False,
    key_prefix: Annotated[str | None, Query(max_length=12)] = None,
    method: Annotated[str | None, Query(pattern="^(POST|PUT|PATCH|DELETE)$")] = None,
    action: Annotated[str | None, Query(max_length=100, description="The operation, e.g. revoke_key, put_price.")] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    start: Annotated[datetime | None, Query(description="Inclusive start (RFC 3339).")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive end (RFC 3339).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    where: list[str] = []
    params: dict[str, object] = {"limit": limit + 1}
    if all_tenants:
        require_superadmin(principal, "reading every tenant's audit rows")
    else:
        where.append("tenant_id = {tenant:String}")
        params["tenant"] = manageable(principal, tenant_id)
    for column, value in (("key_prefix", key_prefix), ("method", method), ("action", action), ("request_id", request_id)):
        if value is not None:
            where.append(f"{column} = {{{column}:String}}")
            params[column] = value
    if status is not None:
        where.append("status = {status:UInt16}")
        params["status"] = status
    for name, when, op in (("start", start, ">="), ("end", end, "<")):
        if when is not None:
            where.append(f"at {op} {{{name}:DateTime64(3, 'UTC')}}")
            params[name] = within_store_range(when).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if cursor:
        params["c_ms"], params["c_rid"], params["c_method"], params["c_path"] = _decode(cursor)
        where.append("(toUnixTimestamp64Milli(at), request_id, method, path) < ({c_ms:Int64}, {c_rid:String}, {c_method:String}, {c_path:String})")
    sql = f"""
        SELECT toUnixTimestamp64Milli(at) AS at_ms, tenant_id, key_prefix, method, path, action, status, request_id
        FROM {store.database}.audit_log
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY at_ms DESC, request_id DESC, method DESC, path DESC
        LIMIT {{limit:UInt32}}
    """
    rows = (await store.aquery(sql, params)).to_dicts()
    page = rows[:limit]
    items = [
        AuditEntry(at=datetime.fromtimestamp(r["at_ms"] / 1000, UTC), **{k: v for k, v in r.items() if k != "at_ms"})
        for r in page
    ]
    return AuditPage(data=items, next_cursor=_cursor(page[-1]) if len(rows) > limit else None)
