"""`up`'s embedded broker, replaced by a fresh one before it holds too much memory.

tansu's memory engine keeps every message it is given and applies no retention (`retention.ms` is
ignored, DeleteRecords closes the connection), so a long-running `up` would grow without bound
(≈ 92 MiB per million spans). What gives memory back is a topic deleted or the broker stopped. A
rotation moves `up` to a new broker and stops the old one, in this order:

1. Start the new broker (from the main thread: it dies with it), create the topics there, and
   copy the tables' changelogs to it, compacted to the last value of each key.
2. Start a new worker on it and wait until it has recovered its tables and consumes. It must be
   running before any message reaches the new broker: Faust drops a message fetched while a
   worker recovers, and with no offset committed yet on a partition (a new broker) it then
   commits past it (`Consumer._new_offset` checks the head gap only `if committed_offset:`).
   A backlog at start would lose a message now and then (seen: 1 of ≈3 400 requests).
3. Switch the ingest producer to the new broker. The switch returns once every write handed to
   the old broker has been answered, so from then on only the old worker writes there.
4. Wait until the old worker has stored what the old broker holds (the drain of a graceful stop),
   for as long as that makes progress.
5. Stop the old worker: nothing writes to the old broker any more.
6. Carry over to the new broker what the worker group did not commit on the old one: every topic
   it consumes from its committed offset on (what a stopping worker abandoned, or events its
   timers sent after the drain) and a topic nobody consumes (the dead letters) whole. A
   committed message is stored: it is not needed. The new worker takes them as any message.
7. Stop the old broker: its memory goes back.

For the few seconds of steps 3-5 two workers run, each the leader on its broker (sharing one
CPU stage, so no second CPU-stage process starts and doubles its memory): their timers overlap
as during a rebalance (same alert ids, the webhook outbox and the anomalies table deduplicate;
see RELIABILITY.md). A detector the old worker moved on after the snapshot judges
the minutes it missed from the store, as after any restart.

Why it loses nothing: a message acknowledged to a client is, at every moment, either committed
(so stored), or in a broker that is still running and whose uncommitted messages are copied
before it stops. Why it counts nothing twice: what is copied may have been stored already (a batch
abandoned after its insert), and every sink deduplicates on ids assigned at acknowledgement,
never on offsets, which the new broker hands out from 0 again.

Why a new broker rather than new topic generations in the same broker: the Faust worker
subscribes to fixed topic names, and a table's changelog cannot be renamed under it.
Production Kafka keeps its own retention: only `up` rotates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from llmscope.broker import EmbeddedBroker
from llmscope.kafka import IngestProducer, consumer_lag, ensure_topics
from llmscope.settings import MiB, Settings

log = logging.getLogger(__name__)

# The drain gives up only when the backlog stops shrinking for this long (the store is down).
DRAIN_STALL_SECONDS = 30.0
# Faust's leader-election topic: the new worker elects itself on the new broker.
LEADER_TOPIC_MARK = "__assignor-__leader"
CHANGELOG_SUFFIX = "-changelog"
CARRY_TIMEOUT_SECONDS = 120.0


class Worker(Protocol):
    async def stop(self) -> None: ...


StartWorker = Callable[[Settings], Awaitable[Worker]]


async def drain(settings: Settings, stall_seconds: float = DRAIN_STALL_SECONDS) -> int:
    """Wait until the worker has stored everything in the broker, for as long as it makes progress;
    returns what is left (0 when drained)."""
    loop = asyncio.get_running_loop()
    best, since = None, loop.time()
    while True:
        try:
            lag = await consumer_lag(settings, settings.worker_name)
        except Exception as exc:
            log.warning("cannot read consumer lag: %s", exc)
            return -1
        if lag == 0:
            return 0
        if best is None or lag < best:
            if best is not None:
                log.info("draining: %d message(s) left to store", lag)
            best, since = lag, loop.time()
        elif loop.time() - since > stall_seconds:
            log.warning("%d message(s) still in the broker: no progress for %.0fs", lag, stall_seconds)
            return lag
        await asyncio.sleep(0.2)


async def carry_over(old: Settings, new: Settings, tables: bool) -> int:
    """Copy messages from the `old` broker to the `new` one, keeping each one's partition, key,
    value and headers; returns how many. With `tables`, only the tables' changelogs, compacted to
    the last value of each key (a snapshot for a worker about to recover its tables on `new`).
    Without, everything else the worker group has not committed: the topics it consumes from
    its committed offset on, a topic nobody consumes (dead letters) whole. Call that only once
    nothing writes to `old` any more."""
    admin = AIOKafkaAdminClient(bootstrap_servers=old.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=old.kafka_bootstrap_servers, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * MiB, fetch_max_bytes=16 * MiB)
    producer = AIOKafkaProducer(bootstrap_servers=new.kafka_bootstrap_servers, acks="all", linger_ms=5,
                                max_batch_size=MiB, max_request_size=2 * MiB,
                                compression_type=None if new.kafka_compression == "none" else new.kafka_compression)
    try:
        await admin.start()
        await consumer.start()
        await producer.start()
        topics = {t: consumer.partitions_for_topic(t) or set() for t in await consumer.topics()
                  if LEADER_TOPIC_MARK not in t and t.endswith(CHANGELOG_SUFFIX) == tables}
        await _create_topics(new, {t: len(p) for t, p in topics.items()})
        tps = [TopicPartition(t, p) for t, parts in topics.items() for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        committed = {} if tables else await admin.list_consumer_group_offsets(old.worker_name, partitions=tps)
        starts = {}
        for tp in tps:
            done = max(committed[tp].offset, 0) if tp in committed else 0
            if done < ends[tp]:
                starts[tp] = done
        if not starts:
            return 0
        records = await _read(consumer, starts, ends)
        copied = 0
        for tp, messages in records.items():
            if tables:  # a table's state: its last value per key
                latest = {key: (value, headers) for key, value, headers in messages}
                messages = [(key, value, headers) for key, (value, headers) in latest.items() if value is not None]
            # One partition at a time: tansu answers a produce request that spans several topics
            # with NotLeaderForPartition for some of them (seen with aiokafka 0.14).
            await asyncio.gather(*[await producer.send(tp.topic, value, key=key, partition=tp.partition, headers=headers)
                                   for key, value, headers in messages])
            copied += len(messages)
        return copied
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


async def _read(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int],
                ends: dict[TopicPartition, int]) -> dict[TopicPartition, list[Record]]:
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    records: dict[TopicPartition, list[Record]] = {tp: [] for tp in starts}
    left = set(starts)
    deadline = time.monotonic() + CARRY_TIMEOUT_SECONDS
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted(str(tp) for tp in left)} to their end")
        for tp, batch in (await consumer.getmany(*left, timeout_ms=1000)).items():
            records[tp] += [(m.key, m.value, list(m.headers)) for m in batch if m.offset < ends[tp]]
        left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    return records


async def _create_topics(settings: Settings, partitions: dict[str, int]) -> None:
    """The topics with these partition counts, unless they exist (never left to auto-creation)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, n, settings.topic_replication) for t, n in partitions.items() if t not in existing and n]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class BrokerGenerations:
    """The embedded broker and the worker on it, replaced together when the broker has grown past
    `broker_rotate_mib` (or is older than `broker_rotate_seconds`, when set)."""

    def __init__(self, settings: Settings, start_worker: StartWorker, on_failure: Callable[[], None]) -> None:
        self._base = settings
        self._start_worker = start_worker
        self._on_failure = on_failure
        self._lock = asyncio.Lock()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.broker: EmbeddedBroker | None = None
        self.worker: Worker | None = None
        self.settings = settings
        self.producer = IngestProducer(settings)
        self._born = time.monotonic()

    def start_broker(self) -> EmbeddedBroker:
        """The first broker: `settings` and the producer point at it from now on. Call it from the
        main thread (the broker dies with the thread that started it)."""
        self.broker = EmbeddedBroker.start()
        self.settings = self._for(self.broker)
        self.producer = IngestProducer(self.settings)
        return self.broker

    async def start_worker(self) -> None:
        self.worker = await self._start_worker(self.settings)

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop()

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    def _for(self, broker: EmbeddedBroker) -> Settings:
        return self._base.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})

    def due(self) -> bool:
        s = self._base
        if self.broker is None:
            return False
        too_old = s.broker_rotate_seconds > 0 and time.monotonic() - self._born >= s.broker_rotate_seconds
        return too_old or self.broker.rss_bytes() >= s.broker_rotate_mib * MiB

    def run(self) -> None:
        """Check every `broker_rotate_check_seconds` and rotate when due, until `close`."""
        self._born = time.monotonic()  # the broker's age counts from the first message it may get
        self._task = asyncio.create_task(self._loop(), name="broker-rotation")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._base.broker_rotate_check_seconds)
            async with self._lock:
                if self._closing or not self.due():
                    continue
                took = Stopwatch()
                try:
                    new_broker, new_worker = await self._next_generation(took)
                except Exception as exc:  # nothing changed for ingest or the old worker: try again later
                    log.warning("could not start a new embedded broker and worker, keeping these: %r", exc)
                    continue
                try:
                    await self._move_to(new_broker, new_worker, took)
                except Exception:
                    log.exception("the embedded broker could not be rotated; stopping in order")
                    self._on_failure()
                    return

    async def _next_generation(self, took: Stopwatch) -> tuple[EmbeddedBroker, Worker]:
        """Steps 1-2: the new broker, its topics, a snapshot of the tables, and a worker on it that
        has recovered them. Undone whole if any part fails."""
        assert self.broker is not None
        log.info("rotating the embedded broker (%.0f MiB)", self.broker.rss_bytes() / MiB)
        broker = EmbeddedBroker.start()  # from the main thread (the event loop's): it dies with it
        worker = None
        try:
            settings = self._for(broker)
            await ensure_topics(settings)
            await carry_over(self.settings, settings, tables=True)
            took.lap("new broker")
            worker = await self._start_worker(settings)
            took.lap("new worker ready")
            return broker, worker
        except BaseException:
            if worker is not None:
                await worker.stop()
            broker.stop()
            raise

    async def _move_to(self, new_broker: EmbeddedBroker, new_worker: Worker, took: Stopwatch) -> None:
        """Steps 3-7 of the module docstring."""
        old_broker, old_settings, old_worker = self.broker, self.settings, self.worker
        assert old_broker is not None and old_worker is not None
        new_settings = self._for(new_broker)
        held = old_broker.rss_bytes()
        await self.producer.switch(new_settings)
        self.broker, self.settings, self.worker, self._born = new_broker, new_settings, new_worker, time.monotonic()
        took.lap("switch")
        left = await drain(old_settings, DRAIN_STALL_SECONDS)
        took.lap("drain")
        await old_worker.stop()
        took.lap("old worker stop")
        carried = await self._carry_over(old_broker, old_settings, new_settings)
        took.lap("carry-over")
        old_broker.stop()
        log.info("broker rotated to %s: the old one (%.0f MiB) stopped; %d message(s) carried over "
                 "(%d not yet stored when the drain ended); %s", new_broker.bootstrap, held / MiB, carried,
                 max(left, 0), took)

    async def _carry_over(self, old_broker: EmbeddedBroker, old: Settings, new: Settings) -> int:
        """carry_over, until it succeeds: the old broker is the only place of what it holds. A copy
        that failed half-way is made again whole; the sinks take the same message twice harmlessly."""
        while True:
            try:
                return await carry_over(old, new, tables=False)
            except Exception as exc:
                if old_broker.process.poll() is not None:
                    log.error("the old broker exited during the rotation: what it held and no worker had stored is lost")
                    return 0
                log.warning("carrying messages over to the new broker failed, retrying: %r", exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Stop rotating; a rotation in progress finishes first. The broker and worker stay."""
        self._closing = True
        async with self._lock:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)


class Stopwatch:
    """Seconds per step, for the rotation's log line."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self._laps.append((name, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self._laps)
