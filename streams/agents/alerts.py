"""The alert evaluator (a leader timer): every tick, each rule of each tenant is evaluated once per
whole minute by the pure state machine (streams/alerting.py), and what changes is made durable in
the order that makes a crash harmless:

1. the alerts rows of the tick's transitions (deterministic ids: a replay rewrites the same rows);
2. one Notification per transition on the events topic, each awaited until the broker has it;
3. the rules' states, last. A crash before this replays the tick from the old state, which makes
   the same transitions with the same alert and event ids (the webhook side deduplicates on them).

State lives in ClickHouse (`alert_state`), not in a Faust table: the timer runs on the leader
only, while a table's partitions are spread over the workers, so a leader could not read the state
of rules whose partition another worker holds; a ClickHouse row is read by whichever worker leads
after a failover, and is where the rules and alerts already are. Only states that changed (apart
from the tick time) are written, so a quiet rule costs no write per minute.

A deleted rule (a tombstone that keeps its body) resolves its firing alerts with reason
"rule_deleted" and its state is forgotten; disabled and changed rules resolve as the state machine
says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import faust
from aiokafka.errors import KafkaError

from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.alert_events import AlertFiringEvent, AlertResolvedEvent
from schemas.alert_rows import StoredRule, alert_row, all_rules, read_states, write_alerts, write_states
from schemas.live import alert_message
from schemas.notifications import Notification
from streams.alert_values import read_values
from streams.alerting import RuleState, Transition, alert_event
from streams.events_topic import Send, events_sender

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def floor_to_minute(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds // 60 * 60), timezone.utc)


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Whether a state differs from the saved one in more than its tick time."""
    if before is None:
        return bool(after["groups"]) or after["fingerprint"] is not None
    return {**before, "last_tick": 0} != {**after, "last_tick": 0}


class AlertEvaluator:
    """Evaluates every rule at a given minute; the timer supplies the minute, tests may too."""

    def __init__(self, store: Store, send: Send) -> None:
        self._store = store
        self._send = send
        self._evaluated: dict[tuple[str, str], int] = {}  # (tenant, rule) -> last minute done here

    async def tick(self, now: datetime) -> list[Notification]:
        """Evaluate each rule not yet evaluated at `now` (a whole minute); the notifications sent."""
        rules, saved = await asyncio.gather(asyncio.to_thread(all_rules, self._store),
                                            asyncio.to_thread(read_states, self._store))
        t = int(now.timestamp())
        notes: list[Notification] = []
        rows: list[dict[str, Any]] = []
        states: list[tuple[str, str, dict[str, Any] | None]] = []
        done: list[tuple[str, str]] = []
        for stored in rules:
            key = (stored.tenant_id, stored.rule.id)
            before = saved.get(key)
            if self._evaluated.get(key, 0) >= t or (before is None and (stored.deleted or not stored.rule.enabled)):
                continue  # done at this minute, or nothing to do: a deleted or disabled rule without state
            try:
                state = RuleState.from_dict(before) if before else RuleState(stored.rule.id)
                transitions = await self._evaluate(stored, state, now)
            except (StoreError, ValueError) as exc:  # this rule only: it is tried again next interval
                log.warning("alert rule %s of %s not evaluated at %s: %s", stored.rule.id, stored.tenant_id, now, exc)
                continue
            done.append(key)
            for tr in transitions:
                event = alert_event(stored.rule, tr)
                rows.append(alert_row(stored.tenant_id, event.data))
                notes.append(Notification(stored.tenant_id, event))
            if stored.deleted:
                states.append((*key, None))
            elif _changed(before, after := state.to_dict()):
                states.append((*key, after))
        if rows:
            await asyncio.to_thread(write_alerts, self._store, rows)
        for note in notes:
            await self._send(note)
        if states:
            await asyncio.to_thread(write_states, self._store, states)
        self._evaluated.update((key, t) for key in done)
        return notes

    async def _evaluate(self, stored: StoredRule, state: RuleState, now: datetime) -> list[Transition]:
        if stored.deleted:
            return state.close_all(now, "rule_deleted")
        if not stored.rule.enabled:
            return state.evaluate(stored.rule, now, {})
        values = await asyncio.to_thread(read_values, self._store, stored.tenant_id, stored.rule, now)
        return state.evaluate(stored.rule, now, values)


def register(app: faust.App, settings: Settings, store: Store, clock: Clock = time.time,
             live: LiveHub | None = None) -> AlertEvaluator:
    """The evaluator's timer on the leader; `clock` gives the time each tick floors to the minute;
    `live` gets each alert that fired or resolved."""
    to_events = events_sender(app, settings)

    async def send(note: Notification) -> None:
        await to_events(note)  # the state is saved only once the broker has the event
        if live is not None and isinstance(note.event, (AlertFiringEvent, AlertResolvedEvent)):
            await live.publish(note.tenant_id, [alert_message(note.event)])

    evaluator = AlertEvaluator(store, send)

    @app.timer(interval=settings.alert_tick_seconds, on_leader=True)
    async def evaluate_alerts() -> None:
        """Once per whole minute per rule; a failed tick saves no state and is replayed next interval."""
        try:
            await evaluator.tick(floor_to_minute(clock()))
        except (StoreError, KafkaError) as exc:
            log.warning("alert evaluation failed, will retry next interval: %s", exc)
        except Exception:  # a bad rule row or an unexpected error must not stop the worker's other agents
            log.exception("alert evaluation failed, will retry next interval")

    return evaluator
