"""The worker: a Faust app whose agent turns ingest-topic messages into stored spans.

Messages are acknowledged explicitly, only after their batch is in ClickHouse (or, for poison
messages, in the dead-letter topic), so a crash at any point redelivers rather than loses.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import faust
from faust.types import EventT, StreamT

from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.messages import HEADER_DLQ_REASON, HEADER_DLQ_SOURCE
from streams.batching import Batcher
from streams.compaction import compact
from streams.pipeline import PreparedBatch, RawMessage, prepare
from streams.policies import PolicyCache, TenantPolicies
from streams.rollup import rollup_table
from streams.sink import SourceOffset, SpanSink, dedup_token

log = logging.getLogger(__name__)


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.worker_name,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        # Brokers hold a group join open for the whole rebalance timeout (tansu included);
        # short timeouts let a restarted worker resume within seconds.
        broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
        # Messages waiting for the agent stay in the broker, not in memory: one batch of read-ahead.
        stream_buffer_maxsize=settings.sink_batch_messages,
    )


class CpuStage:
    """Runs `prepare` in worker processes (so `up` uses more than one core), or on a thread."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: Executor | None = None

    def _executor(self) -> Executor | None:
        if self._processes and self._pool is None:
            # spawn, not fork: the parent holds chDB, Kafka clients and threads.
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    async def prepare(self, messages: list[RawMessage], policies: TenantPolicies) -> PreparedBatch:
        pool = self._executor()
        if pool is None:
            return await asyncio.to_thread(prepare, messages, policies)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, prepare, messages, policies)
        except BrokenProcessPool:
            self._pool = None  # a child died (e.g. OOM-killed); the next attempt starts a new pool
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def create_worker_app(settings: Settings, store: Store, live: LiveHub | None = None) -> tuple[faust.App, SpanSink]:
    app = _faust_app(settings)
    source = app.topic(settings.ingest_topic, value_serializer="raw", key_serializer="raw")
    deadletter = app.topic(settings.deadletter_topic, value_serializer="raw", key_serializer="raw")
    sink = SpanSink(store)
    cpu = CpuStage(settings.worker_processes)
    policies = PolicyCache(store, settings)
    rollups = rollup_table(store.database)

    async def park(raw: RawMessage, key: bytes | None, reason: str) -> None:
        log.warning("dead-lettering %s/%d/%d: %s", raw.topic, raw.partition, raw.offset, reason)
        headers = raw.headers + [
            (HEADER_DLQ_REASON, reason.encode()[:1000]),
            (HEADER_DLQ_SOURCE, f"{raw.topic}/{raw.partition}/{raw.offset}".encode()),
        ]
        await deadletter.send(key=key, value=raw.value, headers=headers)

    async def store_batch(events: list[EventT]) -> None:
        raws = [
            RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.value, _header_list(e.message.headers))
            for e in events
        ]
        current = await policies.current()
        prepared = await _retrying("prepare batch", lambda: cpu.prepare(raws, current))
        for index, reason in prepared.dead:
            await _retrying("dead-letter", lambda: park(raws[index], events[index].message.key, reason))
        token = dedup_token([SourceOffset(r.topic, r.partition, r.offset) for r in raws])
        await sink.write(prepared.span_rows, prepared.span_count, token)
        if live is not None and prepared.span_count:  # stored, so queryable: now tell live subscribers
            await live.publish_rows(prepared.span_rows)
        await sink.write(prepared.rollup_rows, prepared.rollup_count, token, table=rollups)

    @app.agent(source, name="spans")
    async def process(stream: StreamT) -> None:
        stream = stream.noack()  # type: ignore[attr-defined]  # Stream has it; StreamT's stub lacks it
        batcher: Batcher[EventT] = Batcher(
            store_batch,
            stream.ack,
            max_items=settings.sink_batch_messages,
            max_seconds=settings.sink_batch_seconds,
        )
        timer = asyncio.create_task(batcher.run_timer())
        try:
            async for event in stream.events():
                await batcher.add(event)
        finally:
            timer.cancel()
            await batcher.close()
            cpu.close()

    @app.timer(interval=settings.rollup_compact_interval_seconds, on_leader=True)
    async def compact_rollups() -> None:
        """Hour and day rollups from minute rollups; idempotent, so a retry or a second run is harmless."""
        lateness = timedelta(seconds=settings.rollup_lateness_seconds)
        try:
            await asyncio.to_thread(compact, store, datetime.now(timezone.utc), lateness)
        except StoreError as exc:
            log.warning("rollup compaction failed, will retry next interval: %s", exc)

    return app, sink


def _header_list(headers: object) -> list[tuple[str, bytes]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or [])  # type: ignore[call-overload]


async def _retrying(what: str, attempt, max_backoff: float = 10.0):  # type: ignore[no-untyped-def]
    """Retry a step whose failure is transient (broker down, worker process died) forever."""
    delay = 0.2
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed, retrying in %.1fs: %r", what, delay, exc)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(max_backoff, delay * 2)
