"""The Faust worker against the real broker and chDB: stores spans, parks poison, never duplicates."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.messages import (
    FORMAT_OTLP_TRACES,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SOURCE,
    IngestMessage,
)
from streams.sink import SpanSink
from tests.conftest import running_worker
from tests.otlp_factory import llm_span, request_of


@pytest.fixture(scope="session")
async def worker(settings: Settings, store: Store) -> AsyncIterator[SpanSink]:
    async with running_worker(settings, store) as sink:
        yield sink


@pytest.fixture(scope="session")
async def producer(settings: Settings) -> AsyncIterator[IngestProducer]:
    p = IngestProducer(settings)
    await p.connect()
    yield p
    await p.close()


async def _count(store: Store, tenant: str, final: bool = True) -> int:
    df = await store.aquery(
        f"SELECT count() AS n FROM {store.database}.spans {'FINAL' if final else ''} WHERE tenant_id = {{t:String}}",
        {"t": tenant},
    )
    return int(df["n"][0])


async def _eventually(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def _message(tenant: str, n: int) -> IngestMessage:
    req = request_of([llm_span() for _ in range(n)])
    return IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), req.SerializeToString())


async def test_worker_stores_every_span_of_a_message(worker, producer, store) -> None:
    await producer.send(_message("worker-stores", 25))
    assert await _eventually(lambda: _has(store, "worker-stores", 25))


async def _has(store: Store, tenant: str, n: int) -> bool:
    return await _count(store, tenant) == n


async def test_redelivered_message_does_not_duplicate_spans(worker, producer, store) -> None:
    message = _message("worker-redelivery", 10)
    await producer.send(message)
    await producer.send(message)  # what a redelivery after a crash looks like to the sink
    assert await _eventually(lambda: _has(store, "worker-redelivery", 10))
    await asyncio.sleep(1.0)
    assert await _count(store, "worker-redelivery") == 10


async def test_identical_batch_retry_is_dropped_by_the_dedup_token(store) -> None:
    sink = SpanSink(store)
    req = request_of([llm_span() for _ in range(5)])
    from streams.normalise import normalise

    rows = orjson.dumps([s.to_row(time.time_ns()) for s in normalise(req, "sink-token")])
    await sink.write(rows, 5, "test-topic:0:100-104")
    await sink.write(rows, 5, "test-topic:0:100-104")
    assert await _count(store, "sink-token", final=False) == 5


async def _deadletters(settings: Settings, marker: bytes) -> list:
    consumer = AIOKafkaConsumer(
        settings.deadletter_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    try:
        found = []
        batch = await consumer.getmany(timeout_ms=1000)
        for records in batch.values():
            found += [r for r in records if marker in (r.value or b"")]
        return found
    finally:
        await consumer.stop()


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing(
    worker, producer, settings, store
) -> None:
    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await raw.start()
    marker = os.urandom(8).hex().encode()
    try:
        for partition in range(settings.topic_partitions):
            await raw.send_and_wait(
                settings.ingest_topic, b"\xff\xfe not protobuf " + marker, partition=partition,
                headers=[
                    ("llmscope-tenant", b"worker-poison"),
                    ("llmscope-format", FORMAT_OTLP_TRACES.encode()),
                    ("llmscope-received-at-ns", str(time.time_ns()).encode()),
                ],
            )
            await raw.send_and_wait(settings.ingest_topic, b"no headers " + marker, partition=partition)
    finally:
        await raw.stop()
    await producer.send(_message("worker-after-poison", 3))
    assert await _eventually(lambda: _has(store, "worker-after-poison", 3))

    async def parked() -> list:
        found = await _deadletters(settings, marker)
        return found if len(found) >= 2 * settings.topic_partitions else []

    records = await _eventually(parked)
    assert len(records) == 2 * settings.topic_partitions
    reasons = {dict(r.headers)[HEADER_DLQ_REASON].decode() for r in records}
    assert any("ExportTraceServiceRequest" in r for r in reasons)
    assert any("missing header" in r for r in reasons)
    assert all(dict(r.headers)[HEADER_DLQ_SOURCE].startswith(settings.ingest_topic.encode()) for r in records)
