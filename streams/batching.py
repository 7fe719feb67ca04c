"""Size- and time-bounded batches with a bounded number in flight: the worker's flow control.

A batch is handed to `flush` as soon as it has `max_items`, weighs `max_weight` (the worker
weighs messages by their size, so a batch of unusually large messages still fits in memory), or
its first item is `max_seconds` old. Up to `max_in_flight` batches are processed concurrently (so preparing one overlaps with
inserting another); when all slots are busy `add` waits, which stops the agent from pulling
more messages off the broker.

Items are acknowledged only after their batch was flushed AND every batch dispatched before it
was too, so acknowledged offsets never have a gap: Faust commits the first consecutive run of
acked offsets and does not check for a gap before the first commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Batch(Generic[T]):
    items: list[T]
    flushed: bool = False


class Batcher(Generic[T]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[None]],
        ack: Callable[[T], Awaitable[object]],
        *,
        max_items: int,
        max_seconds: float,
        max_in_flight: int = 2,
        max_weight: float = float("inf"),
        weight: Callable[[T], float] = lambda _: 0,
    ) -> None:
        self._flush = flush
        self._ack = ack
        self._max_items = max_items
        self._max_seconds = max_seconds
        self._max_weight = max_weight
        self._weight = weight
        self._pending_weight = 0.0
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[T] = []
        self._opened_at = 0.0
        self._open = asyncio.Event()  # set while a batch is open: the timer sleeps on it when idle
        self._order: deque[_Batch[T]] = deque()  # dispatched, not yet acknowledged, oldest first
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, item: T) -> None:
        if not self._pending:
            self._opened_at = time.monotonic()
            self._open.set()
        self._pending.append(item)
        self._pending_weight += self._weight(item)
        if len(self._pending) >= self._max_items or self._pending_weight >= self._max_weight:
            await self._dispatch()

    async def run_timer(self) -> None:
        """Flush batches that waited long enough; run as a task beside the consuming loop. It wakes
        only when a batch is due, never on a fixed tick, so an idle worker costs no CPU here."""
        while True:
            await self._open.wait()
            due_in = self._opened_at + self._max_seconds - time.monotonic()
            if due_in > 0:
                await asyncio.sleep(due_in)  # the batch may be dispatched by size meanwhile: look again
            elif self._pending:
                await self._dispatch()

    async def _dispatch(self) -> None:
        batch = _Batch(self._pending)
        self._pending, self._pending_weight = [], 0.0
        self._open.clear()
        await self._slots.acquire()
        self._order.append(batch)
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: _Batch[T]) -> None:
        try:
            await self._flush(batch.items)
        except asyncio.CancelledError:
            self._slots.release()
            raise
        except Exception:
            # flush retries whatever can be retried, so this is a bug. The batch keeps its slot and
            # is never acknowledged: once every slot is held the worker stops taking messages, and
            # a restart redelivers them, rather than committing past data that was never stored.
            log.exception("batch of %d failed; holding its offsets uncommitted", len(batch.items))
            return
        batch.flushed = True
        self._slots.release()
        while self._order and self._order[0].flushed:
            for item in self._order.popleft().items:
                await self._ack(item)

    async def close(self) -> None:
        """Cancel in-flight batches: they are not acknowledged, so they will be redelivered."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
