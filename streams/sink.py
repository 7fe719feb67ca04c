"""The ClickHouse span sink: one INSERT per batch, idempotent, retried until it lands.

Delivery is at-least-once, so a batch can arrive again after a crash. Two things make that
harmless: the spans table replaces rows with the same (tenant, hour, trace, span) key, and each
INSERT carries a deduplication token built from the batch's topic-partition offset ranges, so
an identical retry is dropped by ClickHouse before it reaches any materialised view.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmscope.storage import Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceOffset:
    topic: str
    partition: int
    offset: int


def dedup_token(offsets: Sequence[SourceOffset]) -> str:
    """Deterministic for a given set of source messages: `topic:partition:first-last` per partition."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for o in offsets:
        lo, hi = ranges.get((o.topic, o.partition), (o.offset, o.offset))
        ranges[(o.topic, o.partition)] = (min(lo, o.offset), max(hi, o.offset))
    return ",".join(f"{t}:{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))


@dataclass
class SinkHealth:
    healthy: bool = True
    last_error: str = ""
    consecutive_failures: int = 0
    rows_written: int = 0
    batches_written: int = 0
    failed_since: float | None = field(default=None)


class SpanSink:
    def __init__(self, store: Store, *, max_backoff: float = 10.0) -> None:
        self._store = store
        self._table = f"{store.database}.spans"
        self._max_backoff = max_backoff
        self.health = SinkHealth()

    async def write(self, rows_json: bytes, count: int, token: str, table: str | None = None) -> None:
        """Insert a JSON array of rows (into the spans table unless `table` says otherwise) until it succeeds. Never raises for store errors: waiting
        here stops the agent from taking more messages, which is the back-pressure we want when
        ClickHouse is down."""
        if count == 0:
            return
        delay = 0.2
        settings = {"insert_deduplication_token": token}
        while True:
            try:
                await asyncio.to_thread(self._store.insert_json, table or self._table, rows_json, settings)
                break
            except StoreError as exc:
                h = self.health
                h.healthy, h.last_error = False, str(exc)[:500]
                h.consecutive_failures += 1
                h.failed_since = h.failed_since or time.time()
                log.warning("span insert failed (attempt %d), retrying in %.1fs: %s", h.consecutive_failures, delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(self._max_backoff, delay * 2)
        h = self.health
        h.healthy, h.consecutive_failures, h.failed_since = True, 0, None
        h.rows_written += count
        h.batches_written += 1
