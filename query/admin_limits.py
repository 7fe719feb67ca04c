"""`/api/v1/admin/tenants/{tenant_id}/limits`: a tenant's rate limits (ingest/ratelimit.py).

GET shows the limits in effect: the tenant's own values over the settings' defaults
(LLMSCOPE_RATE_LIMIT_*), and which are its own. PUT replaces the tenant's own values; a field
left out or null follows the default again. Limits are the platform's to set, not the tenant's:
PUT needs a `superadmin` key, while an `admin` key may read its own tenant's. Every ingest process
applies a change within LLMSCOPE_RATE_LIMIT_REFRESH_SECONDS (5 s by default).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from llmscope import tenants
from llmscope.errors import NotFound
from llmscope.settings import Settings
from llmscope.storage import Store
from query.admin_tenants import TenantPath
from query.deps import Admin, StoreDep, manageable, require_superadmin
from query.envelope import Envelope
from schemas.rate_limits import LIMIT_FIELDS, RateLimits, read_rate_limits, write_rate_limits

router = APIRouter(prefix="/api/v1/admin/tenants", tags=["admin"])

Rate = Annotated[float, Field(gt=0, le=1e9)]


class LimitsIn(BaseModel):
    """The tenant's own limits; a field left out or null follows the settings' default."""

    model_config = ConfigDict(extra="forbid")

    key_requests_per_second: Rate | None = Field(None, description="Requests per second per API key.")
    key_spans_per_second: Rate | None = Field(None, description="Spans (SDK events) per second per API key.")
    tenant_requests_per_second: Rate | None = Field(None, description="Requests per second, all keys together.")
    tenant_spans_per_second: Rate | None = Field(None, description="Spans per second, all keys together.")
    burst_seconds: float | None = Field(
        None, gt=0, le=3600, description="Bucket size in seconds of each rate: how much may arrive at once after a pause."
    )


class LimitsOut(BaseModel):
    tenant_id: str
    key_requests_per_second: float
    key_spans_per_second: float
    tenant_requests_per_second: float
    tenant_spans_per_second: float
    burst_seconds: float
    own: list[str] = Field(description="The fields set for this tenant; the others are the settings' defaults.")


class LimitsResponse(Envelope[LimitsOut]):
    pass


def _effective(store: Store, settings: Settings, tenant_id: str) -> LimitsOut:
    if tenants.get_tenant(store, tenant_id) is None:
        raise NotFound(f"no tenant '{tenant_id}'")
    own = read_rate_limits(store, tenant_id).get(tenant_id, {})
    limits = RateLimits.defaults(settings).overridden_by(own)
    values = {f: getattr(limits, f) for f in LIMIT_FIELDS}
    return LimitsOut(tenant_id=tenant_id, **values, own=[f for f in LIMIT_FIELDS if own.get(f) is not None])


def _replace(store: Store, settings: Settings, tenant_id: str, body: LimitsIn) -> LimitsOut:
    if tenants.get_tenant(store, tenant_id) is None:
        raise NotFound(f"no tenant '{tenant_id}'")
    write_rate_limits(store, tenant_id, body.model_dump())
    return _effective(store, settings, tenant_id)


@router.get("/{tenant_id}/limits", response_model=LimitsResponse, summary="A tenant's rate limits in effect")
async def get_limits(tenant_id: TenantPath, principal: Admin, store: StoreDep, request: Request) -> LimitsResponse:
    target = manageable(principal, tenant_id)
    return LimitsResponse(data=await asyncio.to_thread(_effective, store, request.app.state.settings, target))


@router.put(
    "/{tenant_id}/limits", response_model=LimitsResponse,
    summary="Set a tenant's rate limits (superadmin)",
    description="Replaces the tenant's own limits; every ingest process applies them within a few seconds.",
)  # fmt: skip
async def put_limits(
    tenant_id: TenantPath, body: LimitsIn, principal: Admin, store: StoreDep, request: Request
) -> LimitsResponse:
    manageable(principal, tenant_id)
    require_superadmin(principal, "setting rate limits")
    return LimitsResponse(data=await asyncio.to_thread(_replace, store, request.app.state.settings, tenant_id, body))
