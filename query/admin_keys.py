"""`/api/v1/admin/keys`: create (the key is shown once), list, revoke and rotate API keys (admin scope).

An `admin` key manages its own tenant's keys and may grant `ingest`, `read` and `admin`; a
`superadmin` key manages every tenant's and may also grant `superadmin`. A key of another tenant
is answered 404, as if it did not exist. Revoking stops the key at once in this process and, with
Redis, in every replica (else within the key refresh, 5 s by default). Rotating makes a new key
with the same tenant, name, scopes and expiry; the old key keeps working for the grace period.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from llmscope import tenants
from llmscope.auth import SCOPES, SUPERADMIN, Principal
from llmscope.errors import BadRequest, NotFound
from llmscope.storage import Store
from query.admin_tenants import TenantId
from query.deps import Admin, StoreDep, manageable, require_superadmin
from query.envelope import Envelope

router = APIRouter(prefix="/api/v1/admin/keys", tags=["admin"])

KeyIdPath = Annotated[str, Path(pattern=tenants.KEY_ID.pattern, description="16 hex digits, as listed.")]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: TenantId | None = Field(None, description="Default: the tenant of the key making the request.")
    name: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    scopes: list[str] = Field(min_length=1, description=f"Of {sorted(SCOPES)}.")
    expires_at: datetime | None = Field(None, description="When the key stops working; never by default.")


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(
        None, ge=0, le=30 * 86_400, description="How long the old key keeps working; default from the settings."
    )


class KeyOut(BaseModel):
    key_id: str = Field(description="Names the key in this API; the key itself is never stored.")
    key_prefix: str = Field(description="The key's first characters, to recognise it.")
    tenant_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = Field(description="Recorded every few seconds, not on every request.")
    expires_at: datetime | None
    revoked: bool
    active: bool = Field(description="Neither revoked nor expired.")


class NewKeyOut(KeyOut):
    key: str = Field(description="The API key. Shown only now: store it; it cannot be shown again.")


class KeyResponse(Envelope[KeyOut]):
    pass


class KeysResponse(Envelope[list[KeyOut]]):
    pass


class NewKeyResponse(Envelope[NewKeyOut]):
    pass


class Rotated(BaseModel):
    new: NewKeyOut
    old: KeyOut = Field(description="Now expiring at the end of the grace period.")


class RotatedResponse(Envelope[Rotated]):
    pass


def _out(row: dict[str, Any]) -> KeyOut:
    expired = row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC)
    return KeyOut(
        key_id=row["key_id"], key_prefix=row["key_prefix"], tenant_id=row["tenant_id"], name=row["name"],
        scopes=sorted(row["scopes"]), created_at=row["created_at"], last_used_at=row["last_used_at"],
        expires_at=row["expires_at"], revoked=bool(row["revoked"]), active=not row["revoked"] and not expired,
    )  # fmt: skip


def _new(key: str, row: dict[str, Any]) -> NewKeyOut:
    return NewKeyOut(key=key, **_out(row).model_dump())


async def _own_key(store: Store, principal: Principal, key_id: str) -> dict[str, Any]:
    row = await asyncio.to_thread(tenants.find_key, store, key_id, None if principal.superadmin else principal.tenant_id)
    if row is None:
        raise NotFound(f"no key '{key_id}' that this API key manages")
    if SUPERADMIN in row["scopes"]:  # else a tenant admin could rotate its way to a superadmin key
        require_superadmin(principal, "managing a superadmin key")
    return row


@router.post("", status_code=201, response_model=NewKeyResponse, summary="Create a key; the answer shows it once")
async def create_key(body: KeyIn, principal: Admin, store: StoreDep) -> NewKeyResponse:
    tenant_id = manageable(principal, body.tenant_id)
    unknown = set(body.scopes) - SCOPES
    if unknown:
        raise BadRequest(f"scopes: unknown {sorted(unknown)}; choose from {sorted(SCOPES)}")
    if SUPERADMIN in body.scopes:
        require_superadmin(principal, "granting the 'superadmin' scope")
    if body.expires_at is not None and body.expires_at.astimezone(UTC) <= datetime.now(UTC):
        raise BadRequest("expires_at: must be in the future (with a time zone, e.g. 2030-01-01T00:00:00Z)")
    if await asyncio.to_thread(tenants.get_tenant, store, tenant_id) is None:
        raise NotFound(f"no tenant '{tenant_id}'; create it first (POST /api/v1/admin/tenants)")
    key, row = await asyncio.to_thread(tenants.new_key, store, tenant_id, body.name, body.scopes, body.expires_at)
    return NewKeyResponse(data=_new(key, row))


@router.get("", response_model=KeysResponse, summary="Keys of a tenant (default: this key's), newest first")
async def list_keys(
    principal: Admin, store: StoreDep,
    tenant_id: Annotated[str | None, Query(pattern=tenants.TENANT_ID.pattern, description="Default: this key's tenant.")] = None,
) -> KeysResponse:  # fmt: skip
    rows = await asyncio.to_thread(tenants.list_keys, store, manageable(principal, tenant_id))
    return KeysResponse(data=[_out(r) for r in rows])


@router.get("/{key_id}", response_model=KeyResponse, summary="One key")
async def get_key(key_id: KeyIdPath, principal: Admin, store: StoreDep) -> KeyResponse:
    return KeyResponse(data=_out(await _own_key(store, principal, key_id)))


@router.post("/{key_id}/revoke", response_model=KeyResponse, summary="Revoke a key: it stops working within seconds")
async def revoke_key(key_id: KeyIdPath, principal: Admin, store: StoreDep, request: Request) -> KeyResponse:
    row = await _own_key(store, principal, key_id)
    revoked = await asyncio.to_thread(tenants.revoke_key, store, row)
    await request.app.state.key_invalidation.publish([row["key_hash"]])
    return KeyResponse(data=_out(revoked))


@router.post(
    "/{key_id}/rotate", status_code=201, response_model=RotatedResponse,
    summary="Rotate a key: a new key (shown once); the old one keeps working for the grace period",
)  # fmt: skip
async def rotate_key(
    key_id: KeyIdPath, principal: Admin, store: StoreDep, request: Request, body: RotateIn | None = None
) -> RotatedResponse:
    row = await _own_key(store, principal, key_id)
    if row["revoked"]:
        raise BadRequest("a revoked key cannot be rotated; create a new key instead")
    seconds = body.grace_seconds if body and body.grace_seconds is not None else request.app.state.settings.api_key_rotation_grace_seconds
    key, fresh, old = await asyncio.to_thread(tenants.rotate_key, store, row, timedelta(seconds=seconds))
    await request.app.state.key_invalidation.publish()  # every replica learns the old key's new expiry now
    return RotatedResponse(data=Rotated(new=_new(key, fresh), old=_out(old)))
