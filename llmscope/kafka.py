"""The Kafka adapter: topic creation and the ingest producer (acks=all, ack only after the broker has it)."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, ProducerClosed, TopicAlreadyExistsError

from llmscope.errors import Unavailable
from llmscope.kafka_security import aiokafka_options
from llmscope.metrics import CONSUMER_LAG, KAFKA_PRODUCE_SECONDS
from llmscope.settings import Settings
from schemas.messages import IngestMessage

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics if missing; existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **aiokafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication)
            for name in (settings.ingest_topic, settings.deadletter_topic, settings.events_topic)
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another replica created it between list and create
    finally:
        await admin.close()


class IngestProducer:
    """Writes ingest messages; `send` returns only once the broker acknowledged (acks=all)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        # After a failure the broker may have restarted without our topics (tansu keeps them in
        # memory) and would auto-create them with its own partition count on the next produce.
        self._check_topics = False
        self.last_error = ""  # why the broker did not answer the last readiness check
        self._aborting: set[asyncio.Task[None]] = set()  # abandoned producers being closed

    def _build(self) -> AIOKafkaProducer:
        s = self._settings
        options: dict[str, object] = {
            "bootstrap_servers": s.kafka_bootstrap_servers,
            "compression_type": None if s.kafka_compression == "none" else s.kafka_compression,
            "linger_ms": s.kafka_linger_ms,
            "max_batch_size": 1024 * 1024,
            "max_request_size": 1024 * 1024 + 64 * 1024,
            "request_timeout_ms": int(s.produce_timeout_seconds * 1000),
            **aiokafka_options(s),
        }
        if s.kafka_idempotence:
            options["enable_idempotence"] = True  # implies acks=all
        else:
            options["acks"] = "all"
        return AIOKafkaProducer(**options)

    async def connect(self) -> None:
        """Connect once; a failure leaves the producer disconnected (ingest then answers 503)."""
        async with self._lock:
            if self._producer is not None:
                return
            producer = self._build()
            try:
                await asyncio.wait_for(producer.start(), self._settings.produce_timeout_seconds)
            except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                await producer.stop()
                raise Unavailable(f"Kafka is unreachable at {self._settings.kafka_bootstrap_servers}: {exc!r}")
            self._producer = producer

    async def send(self, message: IngestMessage, key: bytes | None = None) -> None:
        if self._producer is None:
            await self.connect()
        # This send's producer: a switch (below) during the await must not change it half-way.
        producer, settings = self._producer, self._settings
        assert producer is not None
        start = time.perf_counter()
        try:
            if self._check_topics:
                await asyncio.wait_for(ensure_topics(settings), settings.produce_timeout_seconds)
                self._check_topics = False
            future = await producer.send(settings.ingest_topic, message.value, key=key, headers=message.headers())
            await asyncio.wait_for(future, settings.produce_timeout_seconds)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            KAFKA_PRODUCE_SECONDS.labels("failed").observe(time.perf_counter() - start)
            self._check_topics = True
            self._abandon(producer)
            log.warning("produce failed: %r", exc)
            raise Unavailable("the message broker did not acknowledge the write; retry later") from None
        KAFKA_PRODUCE_SECONDS.labels("ok").observe(time.perf_counter() - start)

    def _abandon(self, producer: AIOKafkaProducer) -> None:
        """Replace `producer` by a new one at the next send, and drop the writes it still holds.

        Those writes were answered 503, and delivered late they do harm: a tansu that restarted
        (its memory storage forgets every topic) stores a write for a topic it does not know yet,
        under the name, when the producer still holds the topic's metadata. The topic that
        `ensure_topics` then creates hands out the same offsets again, and reads return the old
        write in place of the acknowledged one: acknowledged spans were lost (bug 16 in
        RELIABILITY.md). A new producer asks for metadata before it writes."""
        if self._producer is not producer:
            return  # another failed send abandoned it already
        self._producer = None
        task = asyncio.create_task(_abort(producer))
        self._aborting.add(task)
        task.add_done_callback(self._aborting.discard)

    async def reachable(self) -> bool:
        """Whether the broker answers a metadata request now (for readiness)."""
        try:
            if self._producer is None:
                await self.connect()
            assert self._producer is not None
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=2.0)
            return True
        except (KafkaError, OSError, asyncio.TimeoutError, Unavailable) as exc:
            self._check_topics = True
            self.last_error = str(exc) or type(exc).__name__
            return False

    async def switch(self, settings: Settings) -> None:
        """Produce with `settings` (another broker) from now on. Returns once every write handed
        to the old broker has been answered (acknowledged, or failed and so answered 503): after
        it, this producer writes nothing more there. `up` uses it to replace its embedded broker."""
        async with self._lock:
            old, self._producer, self._settings = self._producer, None, settings
            self._check_topics = False
        try:
            await self.connect()
        finally:
            if old is not None:
                await old.stop()  # flushes what it holds, and waits for the broker's answers

    async def close(self) -> None:
        if self._aborting:  # bounded: a write on the wire gets one request timeout to finish
            await asyncio.wait(self._aborting, timeout=self._settings.produce_timeout_seconds)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


async def _abort(producer: AIOKafkaProducer) -> None:
    """Close `producer` without delivering what it holds. aiokafka has no abort (`stop` waits until
    every held write is delivered or expired), so its sender task is stopped first, letting the
    writes on the wire finish their one attempt, and every other held write fails at once."""
    await producer._sender.close()  # aiokafka keeps the sender and the accumulator private
    producer._message_accumulator.fail_all(ProducerClosed())
    await producer.stop()


async def consumer_lag(settings: Settings, group: str) -> int:
    """Messages in the ingest and events topics not yet committed by `group` (all partitions): what
    a stopping `up` must let its worker finish, since its broker forgets them."""
    return sum((await partition_lag(settings, group)).values())


async def partition_lag(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) of the ingest and events topics -> messages not yet committed by `group`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    security = aiokafka_options(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, **security)
    try:  # started inside: a measurement cancelled by its timeout (broker down) still closes both
        await admin.start()
        await consumer.start()
        await consumer.topics()  # loads metadata for every topic
        tps = [TopicPartition(topic, p) for topic in (settings.ingest_topic, settings.events_topic)
               for p in consumer.partitions_for_topic(topic) or set()]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {
            (tp.topic, tp.partition): max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
            for tp in tps
        }
    finally:
        await consumer.stop()
        await admin.close()


async def refresh_consumer_lag(settings: Settings) -> None:
    """Set the consumer-lag gauge of every partition the worker group consumes. Every worker replica
    reports the whole group's lag, so dashboards take the max over replicas."""
    for (topic, partition), lag in (await partition_lag(settings, settings.worker_name)).items():
        CONSUMER_LAG.labels(topic, str(partition)).set(lag)
