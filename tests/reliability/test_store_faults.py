"""The store fails or answers late: the worker neither crashes nor drops nor doubles anything.

An in-process Faust worker writes through FaultyStore (the real session store plus injected
failures); ingest keeps acknowledging because the broker, not the store, holds the backlog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from llmscope.kafka import consumer_lag, ensure_topics
from llmscope.settings import Settings
from llmscope.storage import Store
from streams.worker import create_worker_app
from streams.sink import StoreSink
from tests.ingest.conftest import make_client
from tests.reliability.conftest import FaultyStore, Load, eventually, new_tenant, private_settings

pytestmark = pytest.mark.crash


@pytest.fixture(scope="module")
async def faulty_worker(settings: Settings, store: Store) -> AsyncIterator[tuple[Settings, FaultyStore, StoreSink]]:
    s = private_settings(settings, "faults")
    await ensure_topics(s)
    faulty = FaultyStore(store)
    app, sink = create_worker_app(s, faulty)
    await app.start()
    yield s, faulty, sink
    await app.stop()


async def _counts(store: Store, tenant: str) -> tuple[int, int]:
    sql = f"SELECT count() AS n FROM {store.database}.spans {{}} WHERE tenant_id = {{{{t:String}}}}"
    final = await store.aquery(sql.format("FINAL"), {"t": tenant})
    raw = await store.aquery(sql.format(""), {"t": tenant})
    return int(final["n"][0]), int(raw["n"][0])


async def test_store_outage_backs_off_reports_unhealthy_and_then_stores_everything_once(faulty_worker, store) -> None:
    s, faulty, sink = faulty_worker
    tenant, key = new_tenant(store, "store-outage")
    client, producer = await make_client(s, store)
    load = Load(client, key, spans=10)
    faulty.fail_until = time.monotonic() + 3600  # down until we say otherwise
    faulty.failed.clear()
    try:
        for _ in range(20):
            assert await load.one() == 200  # ingest does not depend on the store being up
        await eventually(lambda: _failed(faulty, 3), timeout=30)
        assert not sink.health.healthy
        assert "injected: ClickHouse is down" in sink.health.last_error
        assert sink.health.failing_writes >= 1 and sink.health.retries >= 3

        # Back-pressure: at most two batches (the Batcher's max_in_flight) are retried, each with
        # growing pauses rather than a busy loop; nothing is committed, and meanwhile ingest
        # keeps acknowledging because the backlog waits in the broker.
        for _ in range(10):
            assert await load.one() == 200
            await asyncio.sleep(0.25)
        assert await consumer_lag(s, s.worker_name) == load.sent
        tokens = {token for _, token in faulty.failed}
        assert 1 <= len(tokens) <= 2, tokens
        first = [t for t, token in faulty.failed if token == faulty.failed[0][1]]
        gaps = [b - a for a, b in zip(first, first[1:])]
        assert len(gaps) >= 2 and all(later > earlier * 1.2 for earlier, later in zip(gaps, gaps[1:])), gaps

        faulty.fail_until = 0.0  # ClickHouse is back
        await eventually(lambda: _stored(store, tenant, len(load.acked)), timeout=30)
        assert sink.health.healthy and sink.health.failing_writes == 0
        assert await _counts(store, tenant) == (len(load.acked), len(load.acked))
        await eventually(lambda: _lag_is_zero(s), timeout=30)
    finally:
        faulty.fail_until = 0.0
        await client.aclose()
        await producer.close()


async def test_offsets_are_never_committed_past_a_batch_not_yet_stored(settings, store) -> None:
    # Committed offsets are the promise "stored, never redeliver". If the group commits past a
    # batch that is still being retried while later batches succeed, a crash (or a graceful
    # stop, which cancels the retry) loses that batch for good.
    s = private_settings(settings, "commit-order")
    await ensure_topics(s)
    faulty = FaultyStore(store)
    app, sink = create_worker_app(s, faulty)
    await app.start()
    tenant, key = new_tenant(store, "commit-order")
    client, producer = await make_client(s, store)
    load = Load(client, key, spans=10)
    try:
        faulty.hold_next_batch()  # the first batch keeps failing, e.g. a timeout on one insert
        for _ in range(10):
            assert await load.one() == 200
        await eventually(lambda: _failed(faulty, 2), timeout=30)
        for _ in range(10):  # later batches insert fine
            assert await load.one() == 200
            await asyncio.sleep(0.1)
        await eventually(lambda: _stored_at_least(store, tenant, 1), timeout=30)
        await asyncio.sleep(3 * s.sink_batch_seconds + 1.5)  # > broker_commit_interval (1 s)
        lag = await consumer_lag(s, s.worker_name)
        stored, _ = await _counts(store, tenant)
        stuck = len(load.acked) - stored
        problems = []
        if stuck and lag == 0:
            problems.append(f"offsets committed to the end while {stuck} acknowledged spans are not stored")
        if stuck and sink.health.healthy:
            problems.append("sink.health says healthy while a batch is still failing")
        assert not problems, problems
    finally:
        faulty.release()
        await client.aclose()
        await producer.close()
        await app.stop()


async def test_insert_that_fails_after_writing_is_retried_without_doubling(faulty_worker, store) -> None:
    # A timeout on the way back: the rows landed but the worker saw an error and retries the
    # same batch. The insert deduplication token drops the retry, so even raw count() is exact.
    s, faulty, sink = faulty_worker
    tenant, key = new_tenant(store, "ambiguous")
    client, producer = await make_client(s, store)
    load = Load(client, key, spans=10)
    faulty.fail_after_write, faulty.fail_calls = True, 2
    try:
        for _ in range(5):
            assert await load.one() == 200
        await eventually(lambda: _lag_is_zero(s), timeout=30)
        assert faulty.fail_calls == 0
        assert await _counts(store, tenant) == (len(load.acked), len(load.acked))
    finally:
        faulty.fail_after_write, faulty.fail_calls = False, 0
        await client.aclose()
        await producer.close()


async def test_slow_store_slows_the_worker_not_the_ingest(faulty_worker, store) -> None:
    s, faulty, sink = faulty_worker
    tenant, key = new_tenant(store, "slow-store")
    client, producer = await make_client(s, store)
    load = Load(client, key, spans=10)
    faulty.delay = 1.0
    try:
        started = time.monotonic()
        for _ in range(50):
            assert await load.one() == 200
        assert time.monotonic() - started < 5.0  # 50 acks while each insert takes 1 s
        await eventually(lambda: _lag_is_zero(s), timeout=30)
        assert await _counts(store, tenant) == (len(load.acked), len(load.acked))
    finally:
        faulty.delay = 0.0
        await client.aclose()
        await producer.close()


async def _failed(faulty: FaultyStore, n: int) -> bool:
    return len(faulty.failed) >= n


async def _stored(store: Store, tenant: str, n: int) -> bool:
    return (await _counts(store, tenant))[0] == n


async def _stored_at_least(store: Store, tenant: str, n: int) -> bool:
    return (await _counts(store, tenant))[0] >= n


async def _lag_is_zero(s: Settings) -> bool:
    return await consumer_lag(s, s.worker_name) == 0
