"""`GET /api/v1/whoami`: the tenant and scopes of the presented key (the console's sign-in check)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from query.deps import Reader
from query.envelope import Envelope

router = APIRouter(prefix="/api/v1", tags=["keys"])


class Identity(BaseModel):
    tenant_id: str
    key_prefix: str
    scopes: list[str]


class IdentityResponse(Envelope[Identity]):
    pass


@router.get("/whoami", response_model=IdentityResponse, summary="The tenant and scopes of this API key")
async def whoami(principal: Reader) -> IdentityResponse:
    return IdentityResponse(
        data=Identity(tenant_id=principal.tenant_id, key_prefix=principal.key_prefix, scopes=sorted(principal.scopes))
    )
