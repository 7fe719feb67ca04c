"""Webhook delivery: the events topic → the outbox → signed POSTs, durable across crashes.

1. The fan-out agent reads each Notification from the events topic, finds the tenant's enabled
   endpoints subscribed to the event's type (of those, an alert goes to the ones its rule names, if
   it names any; a `webhook.test` event to its own endpoint only), inserts one outbox row per
   (event, endpoint) that has none yet, and only then acknowledges the message. A replayed event
   finds its rows and inserts nothing; even if two fan-outs race, a new row has version 0 and cannot
   replace a row that was attempted (schemas/webhook_rows.py).
2. The delivery loop (a leader timer, every LLMSCOPE_WEBHOOK_POLL_SECONDS; as seldom as
   LLMSCOPE_IDLE_POLL_SECONDS while nothing is due, but new rows written in this process and retries
   falling due wake it: streams/pacing.py, llmscope/wakeups.py) takes the due pending rows and
   starts one task per row, at most LLMSCOPE_WEBHOOK_CONCURRENCY in flight and
   LLMSCOPE_WEBHOOK_ENDPOINT_CONCURRENCY per endpoint, so a slow receiver (each attempt has a short
   deadline) only ever occupies its own slots. A task makes one attempt through streams/webhooks,
   appends it to the attempts log, then writes the row's new state: delivered, pending with its next
   attempt time, or failed (a 410 also disables the endpoint).

Durable: the state is the outbox, not memory. A worker killed while a row waits or retries leaves
the row pending, and the next leader attempts it when it is due. A row recorded delivered is never
picked again. The one window is between a receiver's 2xx and the row's write (a crash there sends
the event again, with the same webhook-id): delivery is at least once, and receivers deduplicate
on webhook-id. Within a process the write is retried until it lands, while the row stays in flight.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import faust
from faust.types import StreamT

from llmscope.metrics import WEBHOOK_DELIVERIES
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from llmscope.wakeups import WEBHOOK_OUTBOX, listen
from schemas.alert_events import AlertFiringEvent, AlertResolvedEvent, WebhookTestEvent, parse_event
from schemas.alert_rows import read_rule
from schemas.messages import MalformedMessage
from schemas.notifications import Notification
from schemas.webhook_rows import (
    Attempt,
    Delivery,
    due_deliveries,
    endpoints_by_id,
    existing_deliveries,
    insert_new_deliveries,
    read_endpoints,
    record_attempt,
    write_delivery,
    write_endpoint,
)
from schemas.webhooks import StoredEndpoint
from streams.pacing import IdlePacer
from streams.read_ahead import read_ahead
from streams.retrying import retrying
from streams.webhooks import Outcome, attempt, next_delay, render, webhook_client

log = logging.getLogger(__name__)
EVENTS_BUFFER = 10_000  # notifications read ahead of the fan-out (≤ a few KB each)
CONNECT_TIMEOUT = 5.0


def _now() -> datetime:
    return datetime.now(timezone.utc)


def fan_out(store: Store, note: Notification) -> list[Delivery]:
    """Outbox rows for the endpoints that receive the event and have none for it yet (the new ones)."""
    event = note.event
    endpoints = [e for e in read_endpoints(store, note.tenant_id) if e.receives(event.type, _named(store, note))]
    if isinstance(event, WebhookTestEvent):
        endpoints = [e for e in endpoints if e.id == event.data.endpoint_id]
    have = existing_deliveries(store, note.tenant_id, event.id, [e.id for e in endpoints])
    now = _now()
    new = [Delivery.new(note.tenant_id, e.id, event, now, render(event, e.format)) for e in endpoints if e.id not in have]
    insert_new_deliveries(store, new)
    return new


def _named(store: Store, note: Notification) -> list[str] | None:
    """The endpoints an alert's rule names (None: every subscribed endpoint). A deleted rule's body
    is still read: the resolve it causes goes where its fire went."""
    event = note.event
    if not isinstance(event, AlertFiringEvent | AlertResolvedEvent):
        return None
    rule = read_rule(store, note.tenant_id, event.data.rule.id, include_deleted=True)
    return None if rule is None else rule.webhook_ids


class DeliveryLoop:
    """Takes due outbox rows and delivers them, a bounded number at a time (see the module docstring)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._client = webhook_client(allow_private=settings.webhook_allow_private,
                                      connect_timeout=min(CONNECT_TIMEOUT, settings.webhook_timeout_seconds),
                                      read_timeout=settings.webhook_timeout_seconds)
        self._in_flight: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self.pacer = IdlePacer(settings.idle_poll_seconds)
        self._stop_listening = listen(WEBHOOK_OUTBOX, self.pacer.wake)  # new rows, from the fan-out or the API

    async def tick(self) -> bool:
        """Start attempts for due rows while slots are free; returns whether any are in flight."""
        s = self._settings
        free = s.webhook_concurrency - len(self._in_flight)
        if free <= 0:
            return True
        due = await asyncio.to_thread(due_deliveries, self._store, _now(), s.webhook_endpoint_concurrency,
                                      free + len(self._in_flight))
        due = [d for d in due if d.key() not in self._in_flight][:free]
        busy = Counter(key[:2] for key in self._in_flight)
        endpoints = await asyncio.to_thread(endpoints_by_id, self._store, {(d.tenant_id, d.endpoint_id) for d in due})
        for d in due:
            where = (d.tenant_id, d.endpoint_id)
            if busy[where] >= s.webhook_endpoint_concurrency:
                continue
            busy[where] += 1
            task = asyncio.create_task(self._deliver(d, endpoints.get(where)))
            self._in_flight[d.key()] = task
            task.add_done_callback(functools.partial(self._finished, d.key()))
        return bool(self._in_flight)

    def _finished(self, key: tuple[str, str, str], _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(key, None)

    async def close(self) -> None:
        """Stop: attempts in flight are abandoned (their rows stay pending for the next leader)."""
        self._stop_listening()
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    async def _deliver(self, delivery: Delivery, endpoint: StoredEndpoint | None) -> None:
        try:
            if endpoint is None or not endpoint.enabled:
                why = "the endpoint was deleted" if endpoint is None else \
                    f"the endpoint is disabled ({endpoint.disabled_reason or 'through the API'})"
                failed = delivery.advanced(status="failed", last_error=why, updated_at=_now())
                await self._write("record an undeliverable webhook", write_delivery, failed)
                return
            await self._attempt(delivery, endpoint)
        except Exception:  # a bug must not end the loop; the row stays as it was and is retried
            log.exception("webhook delivery %s to %s failed", delivery.event_id, delivery.endpoint_id)

    async def _attempt(self, delivery: Delivery, endpoint: StoredEndpoint) -> None:
        started = _now()
        event = parse_event(delivery.event)
        body = delivery.body.encode() if delivery.body else render(event, endpoint.format)
        outcome = await attempt(self._client, endpoint.url, delivery.event_id, body, endpoint.signing_secrets(started),
                                timeout=self._settings.webhook_timeout_seconds)
        WEBHOOK_DELIVERIES.labels(outcome.result).inc()
        done = _now()
        number = delivery.attempts + 1
        delay = next_delay(number, outcome, key=f"{delivery.endpoint_id}/{delivery.event_id}")
        next_at = None if delay is None else done + timedelta(seconds=delay * self._settings.webhook_retry_delay_scale)
        tried = Attempt(number, started, outcome.result, outcome.status, outcome.error or "", outcome.elapsed_ms,
                        next_at, outcome.response_excerpt)
        await self._write("record a webhook attempt", record_attempt, delivery, tried)
        if outcome.result == "gone":
            off = endpoint.model_copy(update={"enabled": False, "disabled_reason": outcome.error, "updated_at": done})
            await self._write("disable a gone webhook endpoint", write_endpoint, delivery.tenant_id, off)
        after = delivery.advanced(body=body.decode(), status=_status(outcome, next_at), attempts=number,
                                  next_attempt_at=next_at or done, last_status_code=outcome.status,
                                  last_error=_last_error(outcome, next_at, number), updated_at=done)
        await self._write("record a webhook delivery's state", write_delivery, after)
        if next_at is not None:
            self.pacer.wake((next_at - done).total_seconds())

    async def _write(self, what: str, write: Any, *args: Any) -> None:
        await retrying(what, lambda: asyncio.to_thread(write, self._store, *args))


def _status(outcome: Outcome, next_at: datetime | None) -> str:
    if next_at is not None:
        return "pending"
    return "delivered" if outcome.result == "delivered" else "failed"


def _last_error(outcome: Outcome, next_at: datetime | None, attempts: int) -> str:
    error = outcome.error or ""
    if outcome.result == "retry" and next_at is None:
        error += f"; gave up after {attempts} attempts"
    return error


def register(app: faust.App, settings: Settings, store: Store) -> DeliveryLoop:
    # A burst of notifications (alerts firing together, episodes opening) is fanned out a few store
    # round trips each: see streams/read_ahead.py.
    source = read_ahead(app.topic(settings.events_topic, key_serializer="raw", value_serializer="raw"), EVENTS_BUFFER)
    loop = DeliveryLoop(store, settings)

    @app.agent(source, name="webhook-fanout")
    async def fan_out_events(stream: StreamT) -> None:
        """Acknowledge each notification only once its outbox rows are stored."""
        stream = stream.noack()  # type: ignore[attr-defined]  # Stream has it; StreamT's stub lacks it
        async for event in stream.events():
            try:
                note = Notification.from_bytes(event.message.value)
            except MalformedMessage as exc:
                log.error("skipped a message on %s that is not a notification: %s", settings.events_topic, exc)
            else:
                await retrying("webhook fan-out", lambda: asyncio.to_thread(fan_out, store, note))
            await stream.ack(event)

    @app.timer(interval=settings.webhook_poll_seconds, on_leader=True)
    async def deliver_webhooks() -> None:
        """Start attempts for due deliveries; never waits for a receiver."""
        try:
            await loop.pacer.poll(loop.tick)
        except StoreError as exc:
            log.warning("could not read due webhook deliveries, will retry next interval: %s", exc)

    async def stop_delivering(_sender: Any, *_args: Any, **_kwargs: Any) -> None:
        await loop.close()

    app.on_before_shutdown.connect(stop_delivering)  # type: ignore[arg-type]  # see streams/agents/rollups.py
    return loop
