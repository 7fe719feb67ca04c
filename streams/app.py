"""The worker: a Faust app whose agent turns ingest-topic messages into stored spans.

Messages are acknowledged explicitly, only after their batch is in ClickHouse (or, for poison
messages and unstorable spans, in the dead-letter topic), so a crash at any point redelivers
rather than loses. Rollups are recomputed from the stored spans by leader-only timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta, timezone
from typing import Any

import faust
import orjson
from faust.types import EventT, StreamT

from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.messages import (
    HEADER_DLQ_REASON,
    HEADER_DLQ_SOURCE,
    HEADER_FORMAT,
    HEADER_RECEIVED_AT,
    HEADER_TENANT,
    MalformedMessage,
    parse_headers,
)
from schemas.span import ns_to_ch
from schemas.times import storable
from streams.batching import Batcher
from streams.compaction import MinuteCompactor, compact
from streams.policy_cache import PolicyCache
from streams.rollup import ROLLUP_DIRTY
from streams.sink import SpanSink
from streams.stages.enrich import TenantPolicies
from streams.stages.pipeline import DeadLetter, PreparedBatch, RawMessage, prepare

log = logging.getLogger(__name__)

HEADER_DLQ_ITEM = "llmscope-dlq-item"


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
        # Stopping does not wait for batches in flight: one that cannot be stored (the store is
        # down) would hold the stop forever. They are not acknowledged, so the next worker gets them
        # again, and nothing stores or counts twice (see sink.py); what was acknowledged is committed.
        stream_wait_empty=False,
    )


def _child_init(parent: int) -> None:
    """Runs first in every CPU-stage process: the parent owns it.

    A terminal's Ctrl-C signals the whole foreground process group; the parent decides how to
    stop, so the child ignores it. And the child must not outlive the parent, even a parent
    killed with SIGKILL: the kernel's parent-death signal covers that, and a watchdog thread covers
    the case where the parent died before the signal was armed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class CpuStage:
    """Runs `prepare` in worker processes (so `up` uses more than one core), or on a thread."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._pool: Executor | None = None

    def _executor(self) -> Executor | None:
        if self._processes and self._pool is None:
            # The children (and multiprocessing's helper) start with SIGINT ignored, which they
            # inherit: a Ctrl-C while they import, before _child_init runs, would kill them with a
            # traceback. (A blocked mask would be safer for the parent, but spawn does not pass it on.)
            main = threading.current_thread() is threading.main_thread()
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                # spawn, not fork: the parent holds chDB, Kafka clients and threads.
                pool = ProcessPoolExecutor(
                    self._processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_init, initargs=(os.getpid(),),
                )
                for _ in range(self._processes):
                    pool.submit(int)  # starts the processes now, while SIGINT is ignored
            finally:
                if main:
                    signal.signal(signal.SIGINT, handler)
            self._pool = pool
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
            self._pool = None


def _dead_letter_row(dead: DeadLetter, raw: RawMessage) -> dict[str, object]:
    """The dead_letters row: where it came from and why, never the (unredacted) content."""
    tenant, fmt, received = dead.tenant_id, dead.format, dead.received_at_ns
    if not tenant:
        try:
            headers = parse_headers(raw.headers)
        except MalformedMessage:
            headers = {}
        tenant, fmt = headers.get(HEADER_TENANT, ""), headers.get(HEADER_FORMAT, "")
        received = int(headers[HEADER_RECEIVED_AT]) if headers.get(HEADER_RECEIVED_AT, "").isdigit() else 0
    return {
        "tenant_id": tenant,
        "message_id": dead.message_id or raw.source,
        "item": dead.item,
        "parked_at": f"{time.time():.3f}",
        "received_at": ns_to_ch(received if storable(received) else time.time_ns()),
        "source": raw.source,
        "format": fmt,
        "trace_id": dead.trace_id,
        "span_id": dead.span_id,
        "reason": dead.reason[:1000],
        "size_bytes": len(dead.value if dead.value is not None else raw.value or b""),
    }


def create_worker_app(settings: Settings, store: Store, live: LiveHub | None = None) -> tuple[faust.App, SpanSink]:
    app = _faust_app(settings)
    source = app.topic(settings.ingest_topic, value_serializer="raw", key_serializer="raw")
    deadletter = app.topic(settings.deadletter_topic, value_serializer="raw", key_serializer="raw")
    sink = SpanSink(store)
    cpu = CpuStage(settings.worker_processes)
    policies = PolicyCache(store, settings)
    minutes = MinuteCompactor(store)
    db = store.database

    async def park(dead: DeadLetter, raw: RawMessage, key: bytes | None) -> None:
        what = "message" if dead.item < 0 else f"item {dead.item} of message"
        log.warning("dead-lettering %s %s: %s", what, raw.source, dead.reason)
        headers = raw.headers + [
            (HEADER_DLQ_REASON, dead.reason.encode()[:1000]),
            (HEADER_DLQ_SOURCE, raw.source.encode()),
            (HEADER_DLQ_ITEM, str(dead.item).encode()),
        ]
        value = raw.value if dead.value is None else dead.value
        # force: sent now and awaited, not attached to the current event (which Faust would send
        # only at its ack, after the source offset may already be committed).
        sent = await deadletter.send(key=key, value=value, headers=headers, force=True)
        await sent

    async def store_batch(events: list[EventT]) -> None:
        raws = [
            RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.value, _header_list(e.message.headers))
            for e in events
        ]
        current = await policies.current()
        prepared = await _retrying("prepare batch", lambda: cpu.prepare(raws, current))
        for dead in prepared.dead:
            await _retrying("dead-letter", lambda: park(dead, raws[dead.index], events[dead.index].message.key))
        if prepared.dead:
            rows = orjson.dumps([_dead_letter_row(d, raws[d.index]) for d in prepared.dead])
            await sink.write(rows, len(prepared.dead), prepared.batch_id, table=f"{db}.dead_letters")
        await sink.write(prepared.span_rows, prepared.span_count, prepared.batch_id)
        if live is not None and prepared.span_count:  # stored, so queryable: now tell live subscribers
            await live.publish_rows(prepared.span_rows)
        # Marked only once the spans are in: the minute compactor recomputes exactly these minutes.
        await sink.write(prepared.mark_rows(), len(prepared.minutes), prepared.batch_id, table=f"{db}.{ROLLUP_DIRTY}")

    @app.agent(source, name="spans")
    async def process(stream: StreamT) -> None:
        stream = stream.noack()  # type: ignore[attr-defined]  # Stream has it; StreamT's stub lacks it
        batcher: Batcher[EventT] = Batcher(
            store_batch,
            stream.ack,
            max_items=settings.sink_batch_messages,
            max_seconds=settings.sink_batch_seconds,
            max_weight=settings.sink_batch_bytes,
            weight=lambda e: len(e.message.value or b""),
        )
        timer = asyncio.create_task(batcher.run_timer())
        try:
            async for event in stream.events():
                await batcher.add(event)
        finally:
            timer.cancel()
            await batcher.close()
            cpu.close()

    @app.timer(interval=settings.rollup_minute_interval_seconds, on_leader=True)
    async def compact_minutes() -> None:
        """Minute rollups from the spans stored since the last run; idempotent like every level."""
        try:
            await asyncio.to_thread(minutes.run)
        except StoreError as exc:
            log.warning("minute rollups failed, will retry next interval: %s", exc)

    async def fold_last_marks(_sender: Any, *_args: Any, **_kwargs: Any) -> None:
        """The batches stored since the last run get their minute rollups before the worker goes,
        so a stopped pipeline's numbers are complete (the next leader would fold them anyway)."""
        try:
            await asyncio.to_thread(minutes.run)
        except StoreError as exc:
            log.warning("minute rollups not brought up to date before stopping: %s", exc)

    # mode's stub types async receivers as returning `Awaitable[None] | None` in a way no async def matches.
    app.on_before_shutdown.connect(fold_last_marks)  # type: ignore[arg-type]

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
