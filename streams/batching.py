"""Size- and time-bounded batches with a bounded number in flight: the worker's flow control.

A batch is handed to `flush` as soon as it has `max_items` or its first item is `max_seconds`
old. Up to `max_in_flight` batches are processed concurrently (so preparing one overlaps with
inserting another); when all slots are busy `add` waits, which stops the agent from pulling
more messages off the broker. Items are acknowledged by `flush` itself, only after it succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[None]], *, max_items: int, max_seconds: float, max_in_flight: int = 2
    ) -> None:
        self._flush = flush
        self._max_items = max_items
        self._max_seconds = max_seconds
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[T] = []
        self._opened_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, item: T) -> None:
        if not self._pending:
            self._opened_at = time.monotonic()
        self._pending.append(item)
        if len(self._pending) >= self._max_items:
            await self._dispatch()

    async def run_timer(self) -> None:
        """Flush batches that waited long enough; run as a task beside the consuming loop."""
        tick = min(0.05, self._max_seconds / 4)
        while True:
            await asyncio.sleep(tick)
            if self._pending and time.monotonic() - self._opened_at >= self._max_seconds:
                await self._dispatch()

    async def _dispatch(self) -> None:
        items, self._pending = self._pending, []
        await self._slots.acquire()
        task = asyncio.create_task(self._run(items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T]) -> None:
        try:
            await self._flush(items)
        except asyncio.CancelledError:
            raise
        except Exception:
            # flush retries what can be retried; anything else is a bug. The items stay
            # unacknowledged, so the broker redelivers them after a restart.
            log.exception("batch of %d failed and was not acknowledged", len(items))
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Cancel in-flight batches: they are not acknowledged, so they will be redelivered."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
