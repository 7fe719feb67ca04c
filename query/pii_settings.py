"""The tenant's PII policy (/api/v1/settings/pii): its own if set through the API, else the settings default."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from query.deps import Admin, Reader, StoreDep
from query.envelope import Envelope
from schemas.tenant_settings import PiiPolicy, read_pii_policy, write_pii_policy

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


class PiiPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: PiiPolicy = Field(
        description="off: not scanned; detect: counted only; mask: `[EMAIL]`; hash: `[EMAIL:<hmac>]`; drop: field removed."
    )


class PiiPolicyOut(BaseModel):
    policy: PiiPolicy
    source: Literal["tenant", "default"]


class PiiPolicyResponse(Envelope[PiiPolicyOut]):
    pass


@router.get("/pii", response_model=PiiPolicyResponse, summary="The PII policy applied to this tenant's spans")
async def get_pii_policy(principal: Reader, store: StoreDep, request: Request) -> PiiPolicyResponse:
    own = await asyncio.to_thread(read_pii_policy, store, principal.tenant_id)
    if own is not None:
        return PiiPolicyResponse(data=PiiPolicyOut(policy=own, source="tenant"))
    return PiiPolicyResponse(data=PiiPolicyOut(policy=request.app.state.settings.pii_policy, source="default"))


@router.put(
    "/pii",
    response_model=PiiPolicyResponse,
    summary="Set this tenant's PII policy (admin)",
    description="Applies to spans the worker processes after its next policy refresh; stored spans are not rewritten.",
)
async def put_pii_policy(body: PiiPolicyIn, principal: Admin, store: StoreDep) -> PiiPolicyResponse:
    await asyncio.to_thread(write_pii_policy, store, principal.tenant_id, body.policy)
    return PiiPolicyResponse(data=PiiPolicyOut(policy=body.policy, source="tenant"))
