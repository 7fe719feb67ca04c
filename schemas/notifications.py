"""What travels on the events topic: one tenant's webhook event, from whoever made it to delivery.

The anomaly agent (episodes opened and closed), the alert evaluator (alerts firing and resolved) and
the webhook API (test events) produce; the webhook agent consumes, fans each event out to the
tenant's subscribed endpoints and delivers it. The key is the tenant id, so one tenant's events keep
their order. The event ids are deterministic (schemas/alert_events.py), so a producer that replays
after a crash sends an event the delivery side already holds, and nothing is delivered twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from schemas.alert_events import WebhookEvent, event_json, parse_event
from schemas.messages import MalformedMessage


@dataclass(frozen=True, slots=True)
class Notification:
    tenant_id: str
    event: WebhookEvent

    def key(self) -> bytes:
        return self.tenant_id.encode()

    def to_bytes(self) -> bytes:
        return b'{"tenant_id":' + json.dumps(self.tenant_id).encode() + b',"event":' + event_json(self.event) + b"}"

    @classmethod
    def from_bytes(cls, value: bytes) -> Notification:
        """A notification from the topic; anything else is MalformedMessage (dead-lettered, not retried)."""
        try:
            raw = json.loads(value)
            tenant = raw["tenant_id"]
            if not isinstance(tenant, str) or not tenant:
                raise ValueError("tenant_id must be a non-empty string")
            return cls(tenant, parse_event(json.dumps(raw["event"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedMessage(f"not a notification: {exc}") from None
