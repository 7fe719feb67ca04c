"""Standard Webhooks signatures: what a receiver checks to know a request is ours and unaltered.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 under the
secret's decoded bytes; the header holds `v1,<base64>` once per secret, space-separated, so during
a rotation both the new and the old secret verify. The id is the event's (the same on every
retry: receivers deduplicate on it); the timestamp is the attempt's (receivers refuse stale ones,
the reference library beyond 5 minutes), so every attempt is signed afresh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from schemas.webhooks import secret_key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def webhook_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    if not msg_id or "." in msg_id or " " in msg_id:
        raise ValueError(f"a webhook id must be non-empty without '.' or spaces: {msg_id!r}")
    if not secrets:
        raise ValueError("a webhook needs at least one secret to sign with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
