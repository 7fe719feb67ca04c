"""The broker goes away and comes back: ingest answers 503 + Retry-After in bounded time, never
500, never a hang, and 200 again once a broker listens on the same port.

tansu's memory storage forgets every topic on restart. Whatever acknowledged after the restart
must still be readable from the ingest topic, whoever re-creates it (tansu auto-creates a topic
on produce, with its own default partition count), and whatever was answered 503 must not
reach the new broker before the topic exists (it hid acknowledged writes: bug 16)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmscope.broker import EmbeddedBroker
from llmscope.kafka import ensure_topics
from llmscope.settings import Settings
from tests.ingest.conftest import make_client
from tests.reliability.conftest import Load, eventually, private_settings

pytestmark = pytest.mark.crash

CLIENT_TIMEOUT = 10.0  # the OTLP exporters' default
RETURN_AFTER = 1.5  # seconds between the broker's return and the clients'


async def test_ingest_answers_503_quickly_during_a_broker_outage_and_200_after(settings, store, tenant_keys) -> None:
    broker = await asyncio.to_thread(EmbeddedBroker.start)
    s = private_settings(settings, "outage", kafka_bootstrap_servers=broker.bootstrap)
    await ensure_topics(s)
    client, producer = await make_client(s, store)
    client.timeout = CLIENT_TIMEOUT
    load = Load(client, tenant_keys["a"], spans=5)
    try:
        assert await load.one() == 200
        broker.stop()

        # Several clients at once while the broker is gone: each gets a 503 with Retry-After
        # within the produce timeout (plus slack), never a 500 and never the client's timeout.
        answers = await asyncio.gather(*(_timed_post(load) for _ in range(6)))
        for status, retry_after, seconds in answers:
            assert status == 503 and retry_after is not None and int(retry_after) >= 1, answers
            assert seconds < s.produce_timeout_seconds + 1.5 < CLIENT_TIMEOUT, answers
        ready = await client.get("/ready")
        readiness = (ready.status_code, ready.json()["checks"]["broker"])

        broker = await asyncio.to_thread(EmbeddedBroker.start, broker.port)
        acked_before = set(load.acked)
        # The clients come back a moment after the broker: long enough for the writes the ingest
        # still held from the outage to reach the new broker first, were they ever sent (bug 16).
        await asyncio.sleep(RETURN_AFTER)
        await eventually(lambda: _accepted(load), timeout=20)
        for _ in range(5):
            assert await load.one() == 200
        assert set(load.statuses) <= {200, 503}, load.statuses
        problems = []
        if readiness != (503, False):
            problems.append(f"/ready answered {readiness} (status, broker check) while the broker was down")
        unreadable = load.acked - acked_before - await _span_ids_in_topic(s)
        if unreadable:
            problems.append(f"{len(unreadable)} spans acknowledged after the restart cannot be read from the topic")
        assert not problems, problems
    finally:
        await client.aclose()
        await producer.close()
        broker.stop()


async def _timed_post(load: Load) -> tuple[int, str | None, float]:
    started = time.monotonic()
    r = await load.post()
    return r.status_code, r.headers.get("retry-after"), time.monotonic() - started


async def _accepted(load: Load) -> bool:
    return await load.one() == 200


async def _span_ids_in_topic(s: Settings) -> set[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    consumer = AIOKafkaConsumer(
        s.ingest_topic, bootstrap_servers=s.kafka_bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(s.ingest_topic, p) for p in consumer.partitions_for_topic(s.ingest_topic) or ()]
        ends = await consumer.end_offsets(parts)
        ids: set[str] = set()
        deadline = time.monotonic() + 10
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end] and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    request = ExportTraceServiceRequest.FromString(record.value)
                    ids.update(span.span_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans)
        return ids
    finally:
        await consumer.stop()
