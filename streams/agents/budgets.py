"""The budget evaluator (a leader timer, every LLMSCOPE_BUDGET_TICK_SECONDS): sums each budget's
spend in its current period and emits one `budget.threshold` event per threshold reached, once per
period (schemas/budgets.py says what a period is for monthly and rolling budgets).

Record, then emit. The table `budget_thresholds` is the outbox, and a crossing is made durable in
the order that makes a crash harmless:

1. the tick's new crossings are recorded with sent = 0. A recorded crossing is never crossed again
   (schemas/budgets.py `due` reads the records), so nothing is decided twice, by this worker, a
   restarted one or the next leader;
2. every crossing recorded with sent = 0 (this tick's, and any an earlier tick recorded but did not
   confirm) goes on the events topic, each awaited until the broker has it;
3. they are rewritten with sent = 1.

A crash before 2 leaves rows that the next tick sends; a crash between 2 and 3 sends them again
with the same event id, which the webhook fan-out deduplicates (it makes one delivery per event
and endpoint). So each threshold reaches each subscribed endpoint once per period. Emit-then-record
would instead re-decide after a crash, and could decide differently (a rolling window moved on).

Spend is read from the stored numbers (schemas/budget_rows.py `spend`): one query per budget per
tick, from the rollups for tenant and model budgets, from the spans for user and tag budgets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import faust
from aiokafka.errors import KafkaError

from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.budget_rows import Crossing, all_budgets, read_crossings, record_crossings, spend, unsent_crossings
from schemas.budgets import MAX_WINDOW, crossing_key, due, threshold_event
from schemas.notifications import Notification
from schemas.rollup import read_watermarks
from streams.events_topic import Send, events_sender

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# Crossings older than this can be current for no budget: a month, or the longest rolling window.
_LOOKBACK = timedelta(seconds=MAX_WINDOW) + timedelta(days=1)


class BudgetEvaluator:
    """Evaluates every budget at a given time; the timer supplies it, tests may too."""

    def __init__(self, store: Store, send: Send) -> None:
        self._store = store
        self._send = send

    async def tick(self, now: datetime) -> list[Notification]:
        """The notifications sent: crossings left unsent by an earlier tick, then this tick's."""
        pending = await asyncio.to_thread(unsent_crossings, self._store)
        new = await self._crossings(now)
        await asyncio.to_thread(record_crossings, self._store, new, False)
        notes = []
        for tenant, _, event in (*pending, *new):
            note = Notification(tenant, event)
            await self._send(note)
            notes.append(note)
        await asyncio.to_thread(record_crossings, self._store, [*pending, *new], True)
        return notes

    async def _crossings(self, now: datetime) -> list[Crossing]:
        budgets, recorded, marks = await asyncio.gather(
            asyncio.to_thread(all_budgets, self._store),
            asyncio.to_thread(read_crossings, self._store, now - _LOOKBACK),
            asyncio.to_thread(read_watermarks, self._store))
        covered = {level: until for level, (until, _) in marks.items()}
        out: list[Crossing] = []
        for stored in budgets:
            budget = stored.budget
            start, end = budget.period_at(now)
            try:
                spent = await asyncio.to_thread(spend, self._store, stored.tenant_id, budget, start, end, covered)
            except StoreError as exc:  # this budget only: it is tried again next tick
                log.warning("budget %s of %s not evaluated: %s", budget.id, stored.tenant_id, exc)
                continue
            for threshold in due(budget, spent, now, recorded.get((stored.tenant_id, budget.id), set())):
                out.append((stored.tenant_id, crossing_key(budget, now), threshold_event(budget, threshold, spent, now)))
        return out


def register(app: faust.App, settings: Settings, store: Store, clock: Clock = time.time) -> BudgetEvaluator:
    """The evaluator's timer on the leader; `clock` gives the time of each tick."""
    # A crossing is marked sent only once the broker has its event.
    evaluator = BudgetEvaluator(store, events_sender(app, settings))

    @app.timer(interval=settings.budget_tick_seconds, on_leader=True)
    async def evaluate_budgets() -> None:
        """A failed tick is replayed next interval from what the store recorded."""
        try:
            await evaluator.tick(datetime.fromtimestamp(clock(), timezone.utc))
        except (StoreError, KafkaError) as exc:
            log.warning("budget evaluation failed, will retry next interval: %s", exc)
        except Exception:  # a bad row or an unexpected error must not stop the worker's other agents
            log.exception("budget evaluation failed, will retry next interval")

    return evaluator
