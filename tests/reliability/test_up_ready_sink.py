"""`up` has no worker port: its ingest's and query's `/ready` carry the worker's sink health, 503
with the store's error while the sink's writes fail, 200 again once they succeed. The apps are the
ones `up` builds (roles.up_apps), over a worker whose store fails on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from llmscope.auth import KeyResolver
from llmscope.batched_writer import BatchedWriter
from llmscope.kafka import IngestProducer, ensure_topics
from llmscope.live import LiveHub
from llmscope.roles import up_apps
from llmscope.settings import Settings
from llmscope.storage import Store
from streams.worker import create_worker_app
from tests.ingest.conftest import GENEROUS
from tests.reliability.conftest import FaultyStore, Load, eventually, new_tenant, private_settings


@pytest.fixture
async def up_like(settings: Settings, store: Store) -> AsyncIterator[tuple[FaultyStore, httpx.AsyncClient, httpx.AsyncClient]]:
    s = private_settings(settings, "up-ready", **GENEROUS)
    await ensure_topics(s)
    faulty = FaultyStore(store)
    worker, sink = create_worker_app(s, faulty)
    await worker.start()
    producer = IngestProducer(s)
    audit = BatchedWriter(store, "audit_log", s.audit_flush_seconds, s.audit_buffer_rows)
    ingest_app, query_app = up_apps(s, store, producer, KeyResolver(store, 30.0), LiveHub(), audit, sink)
    ingest = httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest_app), base_url="http://ingest")
    query = httpx.AsyncClient(transport=httpx.ASGITransport(app=query_app), base_url="http://query")
    yield faulty, ingest, query
    faulty.fail_until = 0.0
    await worker.stop()
    for client in (ingest, query):
        await client.aclose()
    await producer.close()
    await audit.close()


async def test_up_ready_is_503_with_the_sink_error_while_the_store_fails(up_like, store: Store) -> None:
    faulty, ingest, query = up_like
    for client in (ingest, query):
        r = await client.get("/ready")
        assert r.status_code == 200 and r.json()["checks"]["sink"] is True, r.text

    faulty.fail_until = float("inf")
    _, key = new_tenant(store, "up-ready")
    assert await Load(ingest, key, spans=5).one() == 200  # the broker holds it; the sink cannot store it

    async def unready(client: httpx.AsyncClient) -> dict | None:
        r = await client.get("/ready")
        return r.json() if r.status_code == 503 else None

    for client in (ingest, query):
        body = await eventually(lambda: unready(client), timeout=30)
        assert body["checks"]["sink"] is False and body["checks"]["store"] is True  # reads still work
        assert "injected: ClickHouse is down" in body["errors"]["sink"]

    faulty.fail_until = 0.0
    for client in (ingest, query):
        await eventually(lambda: _ready(client), timeout=30)


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/ready")).status_code == 200
