"""An in-process ingest app wired to the session's real tansu broker and chDB store, and the rate
limiters it can use: the in-process one (`up`) and the Redis one (production, real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from ingest.app import create_ingest_app
from ingest.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from llmscope.auth import KeyResolver
from llmscope.kafka import IngestProducer, ensure_topics
from llmscope.settings import Settings
from llmscope.storage import Store

# The Redis every machine of ours and CI runs; its absence fails these tests, it never skips them.
REDIS_URL = "redis://127.0.0.1:6379/0"
MakeLimiter = Callable[..., RateLimiter]


# Limits no test's traffic reaches, unless it is about rate limits.
GENEROUS = {
    "rate_limit_per_key": 10_000.0, "rate_limit_per_tenant": 10_000.0,
    "rate_limit_spans_per_key": 1e9, "rate_limit_spans_per_tenant": 1e9,
}  # fmt: skip


async def make_client(
    settings: Settings, store: Store, limiter: RateLimiter | None = None, **limits: float
) -> tuple[httpx.AsyncClient, IngestProducer]:
    """An ingest app over ASGI; `limits` are rate-limit settings (rate_limit_...) over GENEROUS ones."""
    producer = IngestProducer(settings)
    limited = settings.model_copy(update=GENEROUS | limits)
    app = create_ingest_app(limited, store, producer, KeyResolver(store, 30.0), limiter or LocalRateLimiter())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    return client, producer


@pytest.fixture(scope="session")
async def ingest(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(settings)
    client, producer = await make_client(settings, store)
    yield client
    await client.aclose()
    await producer.close()


@pytest.fixture
def run_id() -> str:
    """A tenant-id prefix no other test (or concurrent test run on the shared Redis) uses."""
    return f"rltest-{uuid.uuid4().hex}"


async def connect_redis() -> aioredis.Redis:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc!r}); the rate limiter tests need it", pytrace=False)
    return client


async def delete_buckets(client: aioredis.Redis, run_id: str) -> None:
    """Every bucket a test made: its tenants all start with run_id (the key's hash tag is "{tenant}")."""
    stale = [k async for k in client.scan_iter(match=f"llmscope:rl:{{{run_id}*")]
    if stale:
        await client.delete(*stale)


@pytest.fixture
async def live_redis(run_id: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the real Redis; the test's buckets are deleted afterwards."""
    client = await connect_redis()
    yield client
    await delete_buckets(client, run_id)
    await client.aclose()


@pytest.fixture(params=["local", "redis"])
async def make_limiter(request: pytest.FixtureRequest, run_id: str) -> AsyncIterator[MakeLimiter]:
    """make() -> a fresh limiter of the parametrized kind.

    Tests name their tenants f"{run_id}-..." so the Redis buckets are theirs alone and removed after."""
    redis_client = await connect_redis() if request.param == "redis" else None
    made: list[RedisRateLimiter] = []

    def make() -> RateLimiter:
        if redis_client is None:
            return LocalRateLimiter()
        limiter = RedisRateLimiter(REDIS_URL)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()
    if redis_client is not None:
        await delete_buckets(redis_client, run_id)
        await redis_client.aclose()
