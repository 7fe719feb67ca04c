"""An in-process ingest app wired to the session's real tansu broker and chDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ingest.app import create_ingest_app
from ingest.auth import KeyResolver
from ingest.ratelimit import LocalRateLimiter
from llmscope.kafka import IngestProducer, ensure_topics
from llmscope.settings import Settings
from llmscope.storage import Store


async def make_client(settings: Settings, store: Store, per_key: float = 10_000.0) -> tuple[httpx.AsyncClient, IngestProducer]:
    producer = IngestProducer(settings)
    app = create_ingest_app(
        settings, store, producer, KeyResolver(store, 30.0), LocalRateLimiter(per_key, 10_000.0, 1.0)
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    return client, producer


@pytest.fixture(scope="session")
async def ingest(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(settings)
    client, producer = await make_client(settings, store)
    yield client
    await client.aclose()
    await producer.close()
