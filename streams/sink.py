"""The store sink: one INSERT per batch and table (spans, dead letters, rollup marks), idempotent,
retried until it lands.

Delivery is at-least-once and clients retry, so the same span can arrive many times. The spans
table replaces rows with the same (tenant, start minute, trace, span) key, so reads with FINAL see
each span once, and every rollup is recomputed from them (streams/compaction.py). Each INSERT also
carries a deduplication token built from its batch's message ids, which the ingest assigns and which
never repeat (offsets do, after a broker restart), so an identical retry of a batch is dropped
before it lands and even raw counts stay exact.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from llmscope.metrics import SINK_BATCH_ROWS, SINK_FAILING_WRITES, SINK_WRITE_SECONDS, STORE_RETRIES
from llmscope.storage import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class SinkHealth:
    """Unhealthy while any write is failing: batches are written concurrently, so one batch
    succeeding says nothing about another that is still being retried."""

    failing_writes: int = 0
    retries: int = 0  # failed attempts since start
    last_error: str = ""
    rows_written: int = 0
    batches_written: int = 0

    @property
    def healthy(self) -> bool:
        return self.failing_writes == 0


class StoreSink:
    """Every write of the spans agent goes through here: spans, then dead letters and rollup marks."""

    def __init__(self, store: Store, *, max_backoff: float = 10.0) -> None:
        self.store = store  # also read by the steps that settle what was written (streams/inheritance.py)
        self.database = store.database
        self._table = f"{store.database}.spans"
        self._max_backoff = max_backoff
        self.health = SinkHealth()

    async def write(
        self, rows: bytes, count: int, token: str, table: str | None = None, fmt: str = "JSONEachRow",
    ) -> None:
        """Insert `count` rows in the input format `fmt` (into the spans table unless `table` says
        otherwise) until it succeeds. Never raises for store errors: waiting here stops the agent
        from taking more messages, which is the back-pressure we want when ClickHouse is down."""
        if count == 0:
            return
        delay, attempt, h = 0.2, 0, self.health
        settings = {"insert_deduplication_token": token}
        target = table or self._table
        label = target.rsplit(".", 1)[-1]
        start = time.perf_counter()
        while True:
            try:
                await asyncio.to_thread(self.store.insert, target, rows, fmt, settings)
                break
            except StoreError as exc:
                if attempt == 0:
                    h.failing_writes += 1
                    SINK_FAILING_WRITES.inc()
                attempt += 1
                h.retries += 1
                STORE_RETRIES.labels(label).inc()
                h.last_error = str(exc)[:500]
                log.warning("insert failed (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(self._max_backoff, delay * 2)
            except asyncio.CancelledError:
                if attempt:
                    h.failing_writes -= 1
                    SINK_FAILING_WRITES.dec()
                raise
        if attempt:
            h.failing_writes -= 1
            SINK_FAILING_WRITES.dec()
        SINK_WRITE_SECONDS.labels(label).observe(time.perf_counter() - start)
        SINK_BATCH_ROWS.labels(label).observe(count)
        h.rows_written += count
        h.batches_written += 1
