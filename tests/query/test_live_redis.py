"""The production fan-out: a worker's RedisLiveHub publishes, every query replica's hub delivers
to its own subscribers of that tenant, and an unreachable Redis never raises into the worker."""

from __future__ import annotations

import asyncio
import uuid

from llmscope.live import LiveHub, RedisLiveHub, Subscription
from schemas import span_columns
from streams.stages.normalise import normalise
from tests.otlp_factory import llm_span, request_of

REDIS = "redis://127.0.0.1:6379/0"


def _rows(tenant: str, service: str) -> bytes:
    return span_columns.encode(normalise(request_of([llm_span()], service=service), tenant), [0])


async def _next(sub: Subscription) -> list[str]:
    batch = await sub.next_batch(5.0)
    assert batch is not None, "nothing arrived within 5 s"
    return [m.fields["service"] for m in batch]


async def _subscribed(hub: RedisLiveHub, publisher: RedisLiveHub, tenant: str) -> None:
    """Wait until the replica's reader has subscribed (it applies changes between polls)."""
    for _ in range(100):
        if (await publisher._redis.client.pubsub_numsub(hub.channel(tenant)))[0][1] >= 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("replica never subscribed")


async def test_every_replica_delivers_a_published_batch_to_its_subscribers_of_that_tenant() -> None:
    prefix = f"test-live-{uuid.uuid4().hex[:8]}"
    worker, replica1, replica2 = (RedisLiveHub(REDIS, prefix) for _ in range(3))
    try:
        s1 = replica1.subscribe("t1", lambda m: True, 100)
        s2 = replica2.subscribe("t1", lambda m: True, 100)
        other = replica2.subscribe("t2", lambda m: True, 100)
        await _subscribed(replica1, worker, "t1")
        await _subscribed(replica2, worker, "t1")
        await worker.publish_spans(_rows("t1", "svc-1"))
        assert await _next(s1) == ["svc-1"] and await _next(s2) == ["svc-1"]
        assert await other.next_batch(0.3) is None  # t2's subscriber got nothing of t1
    finally:
        for hub in (worker, replica1, replica2):
            await hub.close()


async def test_publishing_with_redis_down_fails_open() -> None:
    hub = RedisLiveHub("redis://127.0.0.1:1/0", "x")
    try:
        await hub.publish_spans(_rows("t1", "svc"))  # logged, not raised
        await hub.publish_spans(_rows("t1", "svc"))  # skipped during the back-off
    finally:
        await hub.close()


async def test_the_in_process_hub_skips_work_when_nobody_listens() -> None:
    hub = LiveHub()
    await hub.publish_spans(b"not even arrow")  # not parsed: no subscribers
    sub = hub.subscribe("t1", lambda m: True, 10)
    await hub.publish_spans(_rows("t1", "svc"))
    assert await _next(sub) == ["svc"]
    hub.unsubscribe(sub)
    assert hub.subscriber_count == 0
