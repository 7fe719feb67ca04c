"""Outbound webhooks per Standard Webhooks: signed, retried for about a day, guarded against SSRF.

`signing` makes the headers, `transport` connects only to checked addresses, `delivery` makes one
attempt and says whether and when to try again, `formats` renders the body (JSON or Slack). No
state and no clock of their own: the worker keeps an outbox and drives them.

How the worker drives it (an outbox table with one row per (event id, endpoint id): body,
attempts, next_attempt_at, status; rows are inserted by whoever makes the event, keyed so a
replayed event inserts nothing new)::

    client = webhook_client(allow_private=settings.webhook_allow_private)   # one per worker
    # for each due row (next_attempt_at <= now, status pending), a few at a time:
    body = row.body or render(event, endpoint.format)     # render once; every retry sends these bytes
    outcome = await attempt(client, endpoint.url, event.id, body, endpoint.signing_secrets(now))
    delay = next_delay(row.attempts + 1, outcome, key=event.id)
    if outcome.result == "gone": disable the endpoint (disabled_reason = outcome.error)
    status = "pending" if delay is not None else ("delivered" if outcome.result == "delivered" else "failed")
    update row: attempts + 1, last outcome, status, next_attempt_at = now + (delay or 0)

The `webhook-id` is the event id on every attempt, so a receiver that saw an attempt whose answer
we lost recognises the retry. Delivery is at least once; receivers deduplicate on that header.
"""

from streams.webhooks.delivery import (
    RETRY_SCHEDULE,
    Outcome,
    attempt,
    classify,
    next_delay,
    parse_retry_after,
    retry_delay,
)
from streams.webhooks.formats import render, slack_text
from streams.webhooks.signing import sign, webhook_headers
from streams.webhooks.transport import GuardedTransport, webhook_client

__all__ = [
    "RETRY_SCHEDULE",
    "GuardedTransport",
    "Outcome",
    "attempt",
    "classify",
    "next_delay",
    "parse_retry_after",
    "render",
    "retry_delay",
    "sign",
    "slack_text",
    "webhook_client",
    "webhook_headers",
]
