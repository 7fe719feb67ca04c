"""Webhook endpoints (/api/v1/webhooks): where a tenant's alert and anomaly events are delivered.

Reading needs `read`; changing needs `alerts` or `admin`. The signing secret is returned twice
only: when the endpoint is created and when it is rotated (the old secret keeps signing for a
grace period, so receivers can switch at their pace). A URL is checked when it is set: syntax, then every address
its host resolves to must be public unless LLMSCOPE_WEBHOOK_ALLOW_PRIVATE is on (llmscope/netguard.py).

`POST …/{id}/test` puts a `webhook.test` delivery for that endpoint straight into the outbox; the
worker sends it like any other. `GET …/{id}/deliveries` lists deliveries with every attempt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from llmscope.errors import BadRequest, NotFound
from llmscope.netguard import vet_url
from llmscope.storage import Store
from query.deps import AlertsWriter, Reader, StoreDep
from query.envelope import Envelope, Page
from schemas.alert_events import webhook_test_event
from schemas.webhook_rows import (
    Attempt,
    Delivery,
    DeliveryStatus,
    insert_new_deliveries,
    read_attempts,
    read_deliveries,
    read_endpoints,
    write_endpoint,
)
from schemas.webhooks import StoredEndpoint, WebhookEndpoint, WebhookEndpointCreate, WebhookEndpointUpdate

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

EndpointId = Annotated[str, Path(max_length=64, description="The endpoint's id (whep_…).")]


class EndpointResponse(Envelope[WebhookEndpoint]):
    pass


class EndpointsResponse(Envelope[list[WebhookEndpoint]]):
    pass


class EndpointWithSecret(WebhookEndpoint):
    secret: str = Field(description="The signing secret (whsec_…). Shown only now: store it in the receiver.")


class CreatedResponse(Envelope[EndpointWithSecret]):
    pass


class RotatedSecret(BaseModel):
    endpoint_id: str
    secret: str = Field(description="The new signing secret. Shown only now.")
    previous_secret_expires_at: datetime = Field(
        description="Until then every delivery is signed with both secrets (two v1 signatures).")


class RotatedResponse(Envelope[RotatedSecret]):
    pass


class AttemptOut(BaseModel):
    attempt: int = Field(description="1 for the first attempt.")
    attempted_at: datetime
    result: str = Field(description="delivered (2xx), retry (timeout, connection error, 408, 429, 5xx), "
                                    "gone (410: the endpoint is disabled) or failed (other answers, blocked address).")
    status_code: int | None = Field(description="The receiver's HTTP status; null when it gave none.")
    error: str | None = Field(description="What went wrong, when something did.")
    duration_ms: float
    next_attempt_at: datetime | None = Field(description="When the next attempt was scheduled; null after the last.")
    response_excerpt: str = Field(description="The first KiB of the receiver's answer.")


class DeliveryOut(BaseModel):
    event_id: str = Field(description="Also the webhook-id header of every attempt.")
    event_type: str
    event_time: datetime
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When it is tried next; null once delivered or failed.")
    last_status_code: int | None
    last_error: str | None
    attempts: list[AttemptOut]


class DeliveryResponse(Envelope[DeliveryOut]):
    pass


class DeliveryPage(Page[DeliveryOut]):
    pass


def _now() -> datetime:
    """Now, to the millisecond the store keeps, so what an answer shows is what a read returns."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


async def _endpoint(store: Store, tenant_id: str, endpoint_id: str) -> StoredEndpoint:
    found = await asyncio.to_thread(read_endpoints, store, tenant_id, endpoint_id)
    if not found:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}")
    return found[0]


async def _vet(request: Request, url: str) -> None:
    await vet_url(url, allow_private=request.app.state.settings.webhook_allow_private)


def _delivery_out(d: Delivery, attempts: list[Attempt]) -> DeliveryOut:
    return DeliveryOut(
        event_id=d.event_id, event_type=d.event_type, event_time=d.event_time, status=d.status,
        attempt_count=d.attempts, next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        last_status_code=d.last_status_code, last_error=d.last_error or None,
        attempts=[_attempt_out(a) for a in attempts],
    )


def _attempt_out(a: Attempt) -> AttemptOut:
    return AttemptOut(attempt=a.attempt, attempted_at=a.attempted_at, result=a.result, status_code=a.status_code,
                      error=a.error or None, duration_ms=a.duration_ms, next_attempt_at=a.next_attempt_at,
                      response_excerpt=a.response_excerpt)


@router.post("", response_model=CreatedResponse, status_code=201,
             summary="Create a webhook endpoint (alerts or admin); the answer holds its secret, shown only this once")
async def create_endpoint(body: WebhookEndpointCreate, principal: AlertsWriter, store: StoreDep, request: Request) -> CreatedResponse:
    await _vet(request, body.url)
    endpoint = StoredEndpoint.create(body, _now())
    await asyncio.to_thread(write_endpoint, store, principal.tenant_id, endpoint)
    return CreatedResponse(data=EndpointWithSecret(**endpoint.public().model_dump(), secret=endpoint.secret))


@router.get("", response_model=EndpointsResponse, summary="This tenant's webhook endpoints (never their secrets)")
async def list_endpoints(principal: Reader, store: StoreDep) -> EndpointsResponse:
    found = await asyncio.to_thread(read_endpoints, store, principal.tenant_id)
    return EndpointsResponse(data=[e.public() for e in found])


@router.get("/{endpoint_id}", response_model=EndpointResponse, summary="One webhook endpoint")
async def read_endpoint(endpoint_id: EndpointId, principal: Reader, store: StoreDep) -> EndpointResponse:
    return EndpointResponse(data=(await _endpoint(store, principal.tenant_id, endpoint_id)).public())


@router.patch("/{endpoint_id}", response_model=EndpointResponse,
              summary="Change a webhook endpoint (alerts or admin): url, format, description, event_types, enabled",
              description="Given fields replace the endpoint's; `event_types: null` subscribes to every type. "
                          "Enabling an endpoint that deliveries disabled (410) clears its disabled_reason. "
                          "Pending retries go to the new URL.")
async def update_endpoint(endpoint_id: EndpointId, body: WebhookEndpointUpdate, principal: AlertsWriter, store: StoreDep,
                          request: Request) -> EndpointResponse:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if not changes:
        raise BadRequest("nothing to change: give at least one of url, format, description, event_types, enabled")
    for name in ("url", "format", "description", "enabled"):
        if name in changes and changes[name] is None:
            raise BadRequest(f"{name} cannot be null")
    endpoint = await _endpoint(store, principal.tenant_id, endpoint_id)
    if "url" in changes:
        await _vet(request, changes["url"])
    if changes.get("enabled"):
        changes["disabled_reason"] = None
    updated = endpoint.model_copy(update={**changes, "updated_at": _now()})
    await asyncio.to_thread(write_endpoint, store, principal.tenant_id, updated)
    return EndpointResponse(data=updated.public())


@router.delete("/{endpoint_id}", response_model=EndpointResponse,
               summary="Delete a webhook endpoint (alerts or admin); returns it. Its pending deliveries are dropped")
async def delete_endpoint(endpoint_id: EndpointId, principal: AlertsWriter, store: StoreDep) -> EndpointResponse:
    endpoint = await _endpoint(store, principal.tenant_id, endpoint_id)
    gone = endpoint.model_copy(update={"updated_at": _now()})
    await asyncio.to_thread(write_endpoint, store, principal.tenant_id, gone, True)
    return EndpointResponse(data=endpoint.public())


@router.post("/{endpoint_id}/rotate-secret", response_model=RotatedResponse,
             summary="Rotate the signing secret (alerts or admin); the answer holds the new one, shown only this once")
async def rotate_secret(endpoint_id: EndpointId, principal: AlertsWriter, store: StoreDep) -> RotatedResponse:
    endpoint = await _endpoint(store, principal.tenant_id, endpoint_id)
    rotated = endpoint.rotate(_now())
    await asyncio.to_thread(write_endpoint, store, principal.tenant_id, rotated)
    expires = rotated.previous_secrets[-1].expires_at
    return RotatedResponse(data=RotatedSecret(endpoint_id=endpoint.id, secret=rotated.secret,
                                              previous_secret_expires_at=expires))


@router.post("/{endpoint_id}/test", response_model=DeliveryResponse, status_code=202,
             summary="Send a webhook.test event to this endpoint (alerts or admin); follow it in the deliveries")
async def test_endpoint(endpoint_id: EndpointId, principal: AlertsWriter, store: StoreDep) -> DeliveryResponse:
    endpoint = await _endpoint(store, principal.tenant_id, endpoint_id)
    if not endpoint.enabled:
        raise BadRequest(f"the endpoint is disabled ({endpoint.disabled_reason or 'through the API'}); "
                         "enable it first (PATCH enabled: true)")
    now = _now()
    delivery = Delivery.new(principal.tenant_id, endpoint.id, webhook_test_event(endpoint.id, now), now)
    await asyncio.to_thread(insert_new_deliveries, store, [delivery])
    return DeliveryResponse(data=_delivery_out(delivery, []))


def _cursor(d: Delivery) -> str:
    raw = f"{int(d.event_time.timestamp() * 1000)}:{d.event_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        ms, event_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":", 1)
        return datetime.fromtimestamp(int(ms) / 1000, timezone.utc), event_id
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
        raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged") from None


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage,
            summary="This endpoint's deliveries, newest event first, each with every attempt")
async def list_deliveries(endpoint_id: EndpointId, principal: Reader, store: StoreDep,
                          limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: str | None = None) -> DeliveryPage:
    before = _decode(cursor) if cursor else None
    await _endpoint(store, principal.tenant_id, endpoint_id)
    found = await asyncio.to_thread(read_deliveries, store, principal.tenant_id, endpoint_id, limit + 1, before)
    page = found[:limit]
    attempts = await asyncio.to_thread(read_attempts, store, principal.tenant_id, endpoint_id, [d.event_id for d in page])
    return DeliveryPage(data=[_delivery_out(d, attempts.get(d.event_id, [])) for d in page],
                        next_cursor=_cursor(page[-1]) if len(found) > limit else None)
