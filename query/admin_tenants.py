"""`/api/v1/admin/tenants`: create, list, rename, disable and enable tenants (admin scope).

An `admin` key sees and renames its own tenant only; a `superadmin` key (made by the CLI) creates,
lists, renames, disables and enables every tenant. A disabled tenant's keys stop working at once
in this process and in every replica that hears the Redis invalidation (within the key refresh,
5 s by default, in those that do not); its data stays.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from llmscope import tenants
from llmscope.errors import Conflict, NotFound
from query.deps import Admin, StoreDep, manageable, require_superadmin
from query.envelope import Envelope

router = APIRouter(prefix="/api/v1/admin/tenants", tags=["admin"])

TenantId = Annotated[str, Field(pattern=tenants.TENANT_ID.pattern, description="Letters, digits, '.', '_', '-'; 1-64.")]
TenantName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
TenantPath = Annotated[str, Path(pattern=tenants.TENANT_ID.pattern)]


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: TenantId
    name: TenantName | None = Field(None, description="Shown in lists; defaults to the id.")


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TenantName | None = None
    disabled: bool | None = Field(None, description="true: every key of the tenant stops working (superadmin).")


class TenantOut(BaseModel):
    tenant_id: str
    name: str
    created_at: datetime
    disabled: bool


class TenantResponse(Envelope[TenantOut]):
    pass


class TenantsResponse(Envelope[list[TenantOut]]):
    pass


def _out(row: dict[str, Any]) -> TenantOut:
    return TenantOut(tenant_id=row["tenant_id"], name=row["name"], created_at=row["created_at"], disabled=bool(row["disabled"]))


@router.post("", status_code=201, response_model=TenantResponse, summary="Create a tenant (superadmin)")
async def create_tenant(body: TenantIn, principal: Admin, store: StoreDep) -> TenantResponse:
    require_superadmin(principal, "creating a tenant")
    row = await asyncio.to_thread(tenants.create_tenant, store, body.tenant_id, body.name or body.tenant_id)
    if row is None:
        raise Conflict(f"tenant '{body.tenant_id}' exists already")
    return TenantResponse(data=_out(row))


@router.get("", response_model=TenantsResponse, summary="Tenants this key manages (all of them for a superadmin key)")
async def list_tenants(principal: Admin, store: StoreDep) -> TenantsResponse:
    only = None if principal.superadmin else principal.tenant_id
    rows = await asyncio.to_thread(tenants.list_tenants, store, only)
    return TenantsResponse(data=[_out(r) for r in rows])


@router.get("/{tenant_id}", response_model=TenantResponse, summary="One tenant")
async def get_tenant(tenant_id: TenantPath, principal: Admin, store: StoreDep) -> TenantResponse:
    row = await asyncio.to_thread(tenants.get_tenant, store, manageable(principal, tenant_id))
    if row is None:
        raise NotFound(f"no tenant '{tenant_id}'")
    return TenantResponse(data=_out(row))


@router.patch(
    "/{tenant_id}", response_model=TenantResponse,
    summary="Rename a tenant, or disable/enable it (superadmin)",
    description="Disabling stops every key of the tenant within seconds; enabling brings them back. Data is kept.",
)  # fmt: skip
async def update_tenant(
    tenant_id: TenantPath, body: TenantPatch, principal: Admin, store: StoreDep, request: Request
) -> TenantResponse:
    manageable(principal, tenant_id)
    if body.disabled is not None:
        require_superadmin(principal, "disabling or enabling a tenant")
        if body.disabled and tenant_id == principal.tenant_id:
            raise Conflict("a key cannot disable its own tenant (it would lock itself out); use another tenant's superadmin key")
    row = await asyncio.to_thread(tenants.update_tenant, store, tenant_id, name=body.name, disabled=body.disabled)
    if row is None:
        raise NotFound(f"no tenant '{tenant_id}'")
    if body.disabled is not None:
        await request.app.state.key_invalidation.publish(tenants=[tenant_id] if body.disabled else [])
    return TenantResponse(data=_out(row))
