"""The carry-over of a broker rotation (llmscope/broker_rotation.py) against two real tansu brokers:
the tables' snapshot is each changelog's last value per key and nothing else; then exactly what
the worker group has not committed moves, in its partition, with its key and headers, and dead
letters move whole; Faust's leader topic stays behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from llmscope.broker import EmbeddedBroker
from llmscope.broker_rotation import carry_over
from llmscope.kafka import ensure_topics
from llmscope.settings import Settings, load_settings

GROUP = "carry-test"
CHANGELOG = f"{GROUP}-anomaly-detectors-changelog"
LEADER = f"{GROUP}-__assignor-__leader"

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@pytest.fixture
def brokers() -> Iterator[tuple[EmbeddedBroker, EmbeddedBroker]]:
    # Started from the main thread: a broker dies with the thread that started it.
    old, new = EmbeddedBroker.start(), EmbeddedBroker.start()
    yield old, new
    old.stop()
    new.stop()


def _settings(broker: EmbeddedBroker) -> Settings:
    return load_settings(kafka_bootstrap_servers=broker.bootstrap, worker_name=GROUP)


def test_what_the_group_has_not_committed_moves_and_nothing_else(brokers: tuple[EmbeddedBroker, EmbeddedBroker]) -> None:
    old, new = (_settings(b) for b in brokers)
    (tables, after_tables), (copied, on_new), partitions = asyncio.run(_scenario(old, new))

    assert tables == 2 and list(after_tables) == [(CHANGELOG, 1)], "the snapshot is the tables' changelogs only"

    h = [("llmscope-message-id", b"x")]
    assert on_new[(old.ingest_topic, 0)] == [(b"k3", b"m3", h), (b"k4", b"m4", h)]  # committed up to 3
    assert (old.ingest_topic, 1) not in on_new  # all committed: stored, not needed
    assert on_new[(old.events_topic, 2)] == [(b"e", b"e0", []), (b"e", b"e1", [])]  # never committed: all
    assert on_new[(old.deadletter_topic, 3)] == [(None, b"dead0", [("reason", b"r")]), (None, b"dead1", [("reason", b"r")])]
    # The changelog's last value per key; a key whose last value is a tombstone is gone.
    assert sorted(on_new[(CHANGELOG, 1)]) == [(b"a", b"a2", []), (b"c", b"c1", [])]
    assert not any(topic == LEADER for topic, _ in on_new)
    assert copied == 6
    assert partitions[CHANGELOG] == 4, "the changelog keeps its partition count on the new broker"


Copied = tuple[int, dict[tuple[str, int], list[Record]]]


async def _scenario(old: Settings, new: Settings) -> tuple[Copied, Copied, dict[str, int]]:
    await ensure_topics(old)
    await ensure_topics(new)
    admin = AIOKafkaAdminClient(bootstrap_servers=old.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(CHANGELOG, 4, 1), NewTopic(LEADER, 1, 1)])
    await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=old.kafka_bootstrap_servers, acks="all")
    await producer.start()
    h = [("llmscope-message-id", b"x")]
    sends = [(old.ingest_topic, 0, f"k{i}".encode(), f"m{i}".encode(), h) for i in range(5)]
    sends += [(old.ingest_topic, 1, b"k", f"n{i}".encode(), h) for i in range(3)]
    sends += [(old.events_topic, 2, b"e", f"e{i}".encode(), []) for i in range(2)]
    sends += [(old.deadletter_topic, 3, None, f"dead{i}".encode(), [("reason", b"r")]) for i in range(2)]
    sends += [(CHANGELOG, 1, k, v, []) for k, v in ((b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"b", None), (b"c", b"c1"))]
    sends += [(LEADER, 0, b"leader", b"me", [])]
    for topic, partition, key, value, headers in sends:
        await (await producer.send(topic, value, key=key, partition=partition, headers=headers))
    await producer.stop()

    committer = AIOKafkaConsumer(bootstrap_servers=old.kafka_bootstrap_servers, group_id=GROUP, enable_auto_commit=False)
    await committer.start()
    done = {TopicPartition(old.ingest_topic, 0): OffsetAndMetadata(3, ""), TopicPartition(old.ingest_topic, 1): OffsetAndMetadata(3, "")}
    committer.assign(list(done))
    await committer.commit(done)
    await committer.stop()

    tables = await carry_over(old, new, tables=True)
    after_tables, _ = await _everything(new)
    copied = await carry_over(old, new, tables=False)
    on_new, partitions = await _everything(new)
    return (tables, after_tables), (copied, on_new), partitions


async def _everything(settings: Settings) -> tuple[dict[tuple[str, int], list[Record]], dict[str, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        topics = await consumer.topics()
        partitions = {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        found: dict[tuple[str, int], list[Record]] = {}
        if ends:
            consumer.assign(list(ends))
            await consumer.seek_to_beginning(*ends)
            while sum(len(v) for v in found.values()) < sum(ends.values()):
                for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                    found.setdefault((tp.topic, tp.partition), []).extend((m.key, m.value, list(m.headers)) for m in batch)
        return found, partitions
    finally:
        await consumer.stop()
