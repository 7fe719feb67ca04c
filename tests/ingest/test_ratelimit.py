"""Token buckets per API key and per tenant, for both limiters: LocalRateLimiter (what `up` uses)
and RedisRateLimiter (production) against the real Redis on 127.0.0.1:6379.

Rates are low (about a token per second) so that the few milliseconds between back-to-back
requests never refill a whole token: the counts below are exact, not approximate.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
import redis.asyncio as aioredis

from ingest.ratelimit import RateLimiter, RedisRateLimiter
from llmscope.errors import RateLimited
from tests.ingest.conftest import REDIS_URL, MakeLimiter


async def allowed(limiter: RateLimiter, tenant: str, key: str, n: int) -> int:
    """Send n requests back to back; how many were let through."""
    ok = 0
    for _ in range(n):
        try:
            await limiter.acquire(tenant, key)
            ok += 1
        except RateLimited:
            pass
    return ok


async def exhaust(limiter: RateLimiter, tenant: str, key: str) -> RateLimited:
    """Acquire until denied; the denial."""
    for _ in range(1000):
        try:
            await limiter.acquire(tenant, key)
        except RateLimited as denied:
            return denied
    raise AssertionError("never rate limited")


async def test_a_full_burst_is_allowed_then_requests_are_denied(make_limiter: MakeLimiter, run_id: str) -> None:
    limiter = make_limiter(per_key=1.0, per_tenant=1000.0, burst_seconds=5.0)  # key bucket: 5 tokens
    assert await allowed(limiter, f"{run_id}-t", "k1", 8) == 5


async def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst(
    make_limiter: MakeLimiter, run_id: str
) -> None:
    tenant = f"{run_id}-t"
    limiter = make_limiter(per_key=4.0, per_tenant=1000.0, burst_seconds=0.5)  # 2 tokens, one every 0.25 s
    await exhaust(limiter, tenant, "k1")
    denied_at = time.monotonic()
    while time.monotonic() - denied_at < 3.0:  # a denied request charges nothing: polling delays nothing
        try:
            await limiter.acquire(tenant, "k1")
            break
        except RateLimited:
            await asyncio.sleep(0.005)
    waited = time.monotonic() - denied_at
    assert 0.1 <= waited <= 1.5, waited  # about 0.25 s: one token, not the burst, came back
    with pytest.raises(RateLimited):
        await limiter.acquire(tenant, "k1")
    await asyncio.sleep(1.0)  # four tokens' worth of time; the bucket holds two
    assert await allowed(limiter, tenant, "k1", 5) == 2


async def test_each_key_has_its_own_bucket_and_the_tenants_caps_them_all(
    make_limiter: MakeLimiter, run_id: str
) -> None:
    # Per key 3 tokens, per tenant 5 (both rates times 3 s of burst).
    limiter = make_limiter(per_key=1.0, per_tenant=5 / 3, burst_seconds=3.0)
    tenant, other = f"{run_id}-t", f"{run_id}-other"
    assert await allowed(limiter, tenant, "k1", 6) == 3  # the key's bucket
    # Three denials above charged nothing: the tenant has 2 of its 5 left for another key.
    assert await allowed(limiter, tenant, "k2", 6) == 2
    assert await allowed(limiter, tenant, "k3", 2) == 0
    assert await allowed(limiter, other, "k4", 6) == 3  # another tenant's buckets are untouched


@pytest.mark.parametrize(
    ("per_key", "per_tenant", "retry_after"),
    [
        (0.25, 1000.0, 4),  # 1 token; the next comes in 4 s
        (0.4, 1000.0, 3),  # 2.5 s, rounded up to whole seconds
        (5.0, 1000.0, 1),  # 0.2 s: never less than 1
        (1000.0, 0.25, 4),  # the tenant's bucket is the one that waits
    ],
)
async def test_retry_after_is_the_wait_in_whole_seconds_rounded_up(
    make_limiter: MakeLimiter, run_id: str, per_key: float, per_tenant: float, retry_after: int
) -> None:
    limiter = make_limiter(per_key=per_key, per_tenant=per_tenant, burst_seconds=1.0)
    denied = await exhaust(limiter, f"{run_id}-t", "k1")
    assert (denied.status, denied.retry_after) == (429, retry_after)


async def test_ingest_replicas_share_the_redis_buckets(live_redis: aioredis.Redis, run_id: str) -> None:
    first, second = (RedisRateLimiter(REDIS_URL, 1.0, 1000.0, 4.0) for _ in range(2))
    try:
        tenant = f"{run_id}-t"
        assert await allowed(first, tenant, "k1", 2) == 2
        assert await allowed(second, tenant, "k1", 4) == 2
        assert await allowed(first, tenant, "k1", 1) == 0
    finally:
        await first.close()
        await second.close()


async def test_redis_buckets_expire_once_they_would_be_full_again(live_redis: aioredis.Redis, run_id: str) -> None:
    limiter = RedisRateLimiter(REDIS_URL, 2.0, 1.0, 3.0)  # buckets of 6 and 3 tokens, both full after 3 s
    try:
        await limiter.acquire(f"{run_id}-t", "k1")
    finally:
        await limiter.close()
    keys = sorted([k async for k in live_redis.scan_iter(match=f"llmscope:rl:{{{run_id}*")])
    assert [k.decode().rsplit(":", 1)[-1] for k in keys] == ["k1", "tenant"]
    for key in keys:
        assert 0 < await live_redis.pttl(key) <= 4000  # refill time + 1 s: no key outlives its use


async def test_unreachable_redis_allows_requests_and_logs_a_warning(
    run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused, and the port stays ours
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", 1.0, 1.0, 1.0)
        try:
            with caplog.at_level(logging.WARNING, logger="ingest.ratelimit"):
                assert await allowed(limiter, f"{run_id}-t", "k1", 20) == 20  # the bucket would allow 1
        finally:
            await limiter.close()
    warnings = [r for r in caplog.records if r.name == "ingest.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line, not one per request
    assert "allowing requests" in warnings[0].getMessage()
