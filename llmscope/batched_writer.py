"""Rows written to the store in the background, in one insert at most every `flush_seconds`, so a
request never waits for (or fails with) a store write: when API keys were last used (one write per
key per period, not per request) and the audit log.

A failed insert keeps its rows for the next one, up to `max_rows` (beyond, the oldest go, with a
warning): a store outage delays these rows, never a response. What a process held when it was
killed is lost, which is why only records that tolerate that (usage times, audit entries of a dying
process) are written this way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Hashable, Mapping
from typing import Any

from llmscope.storage import Store, StoreError

log = logging.getLogger(__name__)


class BatchedWriter:
    def __init__(self, store: Store, table: str, flush_seconds: float, max_rows: int = 100_000) -> None:
        self._store = store
        self._table = table
        self._flush_seconds = flush_seconds
        self._max_rows = max_rows
        self._pending: dict[Hashable, Mapping[str, Any]] = {}
        self._counter = itertools.count()
        self._flushing: asyncio.Task[None] | None = None

    def add(self, row: Mapping[str, Any], key: Hashable | None = None) -> None:
        """Queue `row`; a later row with the same `key` replaces a pending one."""
        self._pending.pop(key, None)  # re-inserted last, so the order stays oldest first
        self._pending[next(self._counter) if key is None else key] = row
        if len(self._pending) > self._max_rows:
            del self._pending[next(iter(self._pending))]
            log.warning("more than %d rows for %s wait for the store; dropping the oldest", self._max_rows, self._table)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while self._pending:  # rows added during a flush, or kept by a failed one, go in the next
            await asyncio.sleep(self._flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        taken, self._pending = self._pending, {}
        if not taken:
            return
        try:
            await asyncio.to_thread(self._store.insert_rows, f"{self._store.database}.{self._table}", list(taken.values()))
        except StoreError as exc:
            log.warning("cannot write %d row(s) to %s, keeping them for the next flush: %s", len(taken), self._table, exc)
            self._pending = taken | self._pending

    async def close(self) -> None:
        """Write what is queued now (a stopping process)."""
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self.flush()
