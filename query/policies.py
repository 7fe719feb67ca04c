"""The tenant's PII policy (/api/v1/settings/pii): its own if set through the API, else the settings default."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from query.deps import Admin, Reader, StoreDep
from streams.stages.pii import PiiPolicy

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


class PiiPolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: PiiPolicy = Field(
        description="off: not scanned; detect: counted only; mask: `[EMAIL]`; hash: `[EMAIL:<hmac>]`; drop: field removed."
    )


class PiiPolicyOut(BaseModel):
    policy: PiiPolicy
    source: Literal["tenant", "default"]


class PiiPolicyResponse(BaseModel):
    data: PiiPolicyOut
    next_cursor: None = None


@router.get("/pii", response_model=PiiPolicyResponse, summary="The PII policy applied to this tenant's spans")
async def get_pii_policy(principal: Reader, store: StoreDep, request: Request) -> PiiPolicyResponse:
    rows = await store.aquery(
        f"SELECT policy FROM {store.database}.tenant_pii_policy FINAL WHERE tenant_id = {{tenant:String}}",
        {"tenant": principal.tenant_id},
    )
    if rows.height:
        return PiiPolicyResponse(data=PiiPolicyOut(policy=rows["policy"][0], source="tenant"))
    return PiiPolicyResponse(data=PiiPolicyOut(policy=request.app.state.settings.pii_policy, source="default"))


@router.put(
    "/pii",
    response_model=PiiPolicyResponse,
    summary="Set this tenant's PII policy (admin)",
    description="Applies to spans the worker processes after its next policy refresh; stored spans are not rewritten.",
)
async def put_pii_policy(body: PiiPolicyIn, principal: Admin, store: StoreDep) -> PiiPolicyResponse:
    now = time.time_ns()  # the version: the newest write wins in the ReplacingMergeTree
    row = {
        "tenant_id": principal.tenant_id,
        "policy": body.policy.value,
        "updated_at": f"{now // 1_000_000_000}.{now // 1_000_000 % 1000:03d}",
        "version": now,
    }
    await store.ainsert_rows(f"{store.database}.tenant_pii_policy", [row])
    return PiiPolicyResponse(data=PiiPolicyOut(policy=body.policy, source="tenant"))
