"""Webhook endpoints: where a tenant's events go, in which body format, signed with which secret.

Secrets follow Standard Webhooks: `whsec_` + base64 of 32 random bytes, unique per endpoint; the
HMAC key is the decoded bytes. The API shows a secret when the endpoint is created; rotating
(`StoredEndpoint.rotate`) makes a new one and keeps the old one for a grace period, during which
every attempt is signed with both (`webhook-signature` holds both), so a receiver can switch
secrets at its own pace.

The URL is checked here for syntax only (scheme, credentials, odd characters); the API also
awaits `llmscope.netguard.vet_url` before storing it, and the worker checks the addresses again
on every attempt (see llmscope/netguard.py).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from llmscope.netguard import BlockedDestination, check_url_syntax
from schemas.alert_events import EventType

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_GRACE = timedelta(hours=24)
WebhookFormat = Literal["json", "slack"]
Description = Annotated[str, StringConstraints(max_length=2000)]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (24 to 64 bytes, as Standard Webhooks asks)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is 'whsec_' and base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def new_endpoint_id() -> str:
    return "whep_" + secrets.token_hex(12)


def _url(value: str) -> str:
    try:
        check_url_syntax(value)
    except BlockedDestination as exc:
        raise ValueError(exc.message) from None
    return value


class WebhookEndpointCreate(BaseModel):
    """POST /api/v1/webhooks body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    format: WebhookFormat = Field("json", description="'json': the event; 'slack': {\"text\": summary}.")
    description: Description = ""
    event_types: list[EventType] | None = Field(None, description="Event types sent here; null = all.")
    enabled: bool = True

    _check_url = field_validator("url")(_url)


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    format: WebhookFormat | None = None
    description: Description | None = None
    event_types: list[EventType] | None = None
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)


class WebhookEndpoint(BaseModel):
    """An endpoint as the API shows it: never its secrets."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    format: WebhookFormat
    description: str
    event_types: list[EventType] | None
    enabled: bool
    disabled_reason: str | None = Field(None, description="Set when deliveries disabled it (e.g. the receiver answered 410).")
    created_at: datetime
    updated_at: datetime


class PreviousSecret(BaseModel):
    model_config = ConfigDict(frozen=True)

    secret: str
    expires_at: datetime


class StoredEndpoint(WebhookEndpoint):
    """What the store keeps and the worker reads: the endpoint with its secrets."""

    secret: str
    previous_secrets: list[PreviousSecret] = []

    @classmethod
    def create(cls, spec: WebhookEndpointCreate, now: datetime) -> StoredEndpoint:
        return cls(id=new_endpoint_id(), url=spec.url, format=spec.format, description=spec.description,
                   event_types=spec.event_types, enabled=spec.enabled, disabled_reason=None, created_at=now, updated_at=now,
                   secret=new_secret())

    def public(self) -> WebhookEndpoint:
        return WebhookEndpoint.model_validate(self.model_dump(include=set(WebhookEndpoint.model_fields)))

    def signing_secrets(self, now: datetime) -> list[str]:
        """The current secret first, then the rotated ones still in their grace period."""
        return [self.secret] + [p.secret for p in self.previous_secrets if p.expires_at > now]

    def rotate(self, now: datetime, grace: timedelta = ROTATION_GRACE) -> StoredEndpoint:
        kept = [p for p in self.previous_secrets if p.expires_at > now]
        return self.model_copy(update={
            "secret": new_secret(), "updated_at": now,
            "previous_secrets": [*kept, PreviousSecret(secret=self.secret, expires_at=now + grace)],
        })

    def receives(self, event_type: str, webhook_ids: list[str] | None = None) -> bool:
        """Whether an event goes here: the endpoint is enabled and subscribed to the type, and the
        rule that raised it names this endpoint or names none (`webhook_ids` empty or None)."""
        if not self.enabled or (self.event_types is not None and event_type not in self.event_types):
            return False
        return not webhook_ids or self.id in webhook_ids
