"""The Faust worker against the real broker and chDB: stores spans, parks poison, never duplicates."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from llmscope.auth import create_key
from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.messages import (
    FORMAT_OTLP_TRACES,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SOURCE,
    IngestMessage,
)
from streams.sink import StoreSink
from tests.conftest import query_client, running_worker
from tests.otlp_factory import llm_span, request_of
from tests.reliability.conftest import committed, eventually, private_settings


@pytest.fixture(scope="session")
async def worker(settings: Settings, store: Store) -> AsyncIterator[StoreSink]:
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


async def _rollup_totals(store: Store, tenant: str) -> tuple[int, int, int]:
    df = await store.aquery(
        f"SELECT sum(requests) AS r, sum(input_tokens) AS i, sum(output_tokens) AS o "
        f"FROM {store.database}.rollup_minute FINAL WHERE tenant_id = {{t:String}}",
        {"t": tenant},
    )
    return int(df["r"][0]), int(df["i"][0]), int(df["o"][0])


async def test_a_client_resend_is_a_new_message_yet_counts_once_in_spans_and_rollups(worker, producer, store, settings) -> None:
    tenant = f"worker-resend-{uuid.uuid4().hex[:6]}"
    spans = [llm_span(input_tokens=100 + i, output_tokens=7) for i in range(10)]
    expected = (10, sum(100 + i for i in range(10)), 70)
    for _ in range(3):  # the exporter timed out and sent the same request again: new message, new id
        # Each copy is stored in a batch of its own (copies in one INSERT block collapse on insert).
        done = await committed(settings)
        await producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), request_of(spans).SerializeToString()))
        await eventually(lambda: _committed_at_least(settings, done + 1))
        assert await _eventually(lambda: _rollup_totals_are(store, tenant, expected)), await _rollup_totals(store, tenant)
    assert await _count(store, tenant) == 10
    await asyncio.sleep(1.5)  # later minute recomputations must not change it either
    assert await _rollup_totals(store, tenant) == expected


async def _rollup_totals_are(store: Store, tenant: str, expected: tuple[int, int, int]) -> bool:
    return await _rollup_totals(store, tenant) == expected


class _CrashBeforeCommit(Store):
    """The real store, except that the worker's last write before it acknowledges a batch (the
    minute marks) fails: its spans are stored, its offsets never committed, as in a crash there."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.database = inner, inner.database

    def command(self, sql, params=None):  # type: ignore[no-untyped-def]
        self.inner.command(sql, params)

    def query_arrow(self, sql, params=None):  # type: ignore[no-untyped-def]
        return self.inner.query_arrow(sql, params)

    def insert(self, table, body, fmt, settings=None):  # type: ignore[no-untyped-def]
        if table.endswith(".rollup_dirty"):
            raise StoreError("injected: crashed before the commit")
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:
        pass


async def test_a_true_redelivery_at_the_same_offsets_stores_and_counts_nothing_twice(settings, store) -> None:
    # One batch of exactly the 4 messages both times, however busy the machine: the insert's
    # deduplication token is its batch's message ids, so the same batch must form again.
    own = private_settings(settings, "redeliver", sink_batch_messages=4, sink_batch_seconds=120.0)
    tenant = f"redeliver-{uuid.uuid4().hex[:6]}"
    async with running_worker(own, _CrashBeforeCommit(store)):
        producer = IngestProducer(own)
        await producer.connect()
        try:
            for _ in range(4):
                await producer.send(_message(tenant, 5))
        finally:
            await producer.close()
        assert await _eventually(lambda: _has(store, tenant, 20))
        await asyncio.sleep(1.0)
        assert await committed(own) == 0
    # Restarted: the same messages (same offsets, same message ids) are delivered again.
    async with running_worker(own, store):
        assert await eventually(lambda: _committed_at_least(own, 4))
        assert await _eventually(lambda: _rollup_totals_are(store, tenant, (20, 2000, 400)))
    assert await _count(store, tenant, final=False) == 20  # not even a raw duplicate: same message ids
    assert await _count(store, tenant) == 20
    assert await _rollup_totals(store, tenant) == (20, 2000, 400)


async def _committed_at_least(own: Settings, n: int) -> bool:
    return await committed(own) >= n


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
    # Listed for admins too (reason and origin, never the content).
    listed = await store.aquery(
        f"SELECT reason, source FROM {store.database}.dead_letters FINAL WHERE tenant_id = 'worker-poison'"
    )
    assert listed.height == settings.topic_partitions
    assert all("ExportTraceServiceRequest" in r for r in listed["reason"].to_list())


async def test_model_calls_take_the_user_of_a_root_that_arrives_last(worker, producer, store, settings) -> None:
    """The usual OTel order: each span is exported when it ends, so the agent span that set the user
    and the prompt arrives after the model calls inside it, in another message."""
    tenant, trace = f"worker-inherit-{uuid.uuid4().hex[:6]}", os.urandom(16)
    root = llm_span(trace, name="invoke_agent support", extra={
        "gen_ai.operation.name": "invoke_agent", "user.id": "u-42", "session.id": "s-7",
        "gen_ai.prompt.name": "support-reply", "gen_ai.prompt.version": "4"})
    calls = [llm_span(trace, parent=root.span_id) for _ in range(3)]
    await producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), request_of(calls).SerializeToString()))
    assert await _eventually(lambda: _has(store, tenant, 3))
    await producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), request_of([root]).SerializeToString()))

    async def by_user() -> list[tuple[str, str, str, int]]:
        df = await store.aquery(
            f"SELECT user_id, session_id, prompt_name, count() AS n FROM {store.database}.spans FINAL "
            "WHERE tenant_id = {t:String} AND operation = 'chat' GROUP BY user_id, session_id, prompt_name",
            {"t": tenant})
        return [tuple(r.values()) for r in df.to_dicts()]

    assert await _eventually(lambda: _equals(by_user, [("u-42", "s-7", "support-reply", 3)])), await by_user()
    async with query_client(settings, store) as api:
        key = {"authorization": f"Bearer {create_key(store, tenant, 'r', {'read'})}"}
        r = await api.get("/api/v1/metrics/breakdown", params={"dimension": "user"}, headers=key)
        assert [(i["key"], i["requests"]) for i in r.json()["data"]["items"]] == [("u-42", 3)]
        rollup = await _eventually(lambda: _prompt_requests(api, key))
        assert rollup == [("support-reply", 3)]


async def _equals(get, expected) -> bool:  # type: ignore[no-untyped-def]
    return await get() == expected


async def _prompt_requests(api, key) -> list[tuple[str, int]] | None:  # type: ignore[no-untyped-def]
    r = await api.get("/api/v1/metrics/breakdown", params={"dimension": "prompt"},
                      headers={**key, "cache-control": "no-cache"})
    items = [(i["key"], i["requests"]) for i in r.json()["data"]["items"]]
    return items if items == [("support-reply", 3)] else None
