"""Token buckets per API key and per tenant, for requests and for spans, for both limiters:
LocalRateLimiter (what `up` uses) and RedisRateLimiter (production) against the real Redis on
127.0.0.1:6379; and the RateLimit-Policy / RateLimit headers they report.

Rates are low (about a token per second) so that the few milliseconds between back-to-back
requests never refill a whole token: the counts below are exact, not approximate.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import http_sf
import pytest
import redis.asyncio as aioredis

from ingest.ratelimit import Quota, RateLimiter, RedisRateLimiter
from llmscope.errors import RateLimited
from schemas.rate_limits import RateLimits
from tests.ingest.conftest import REDIS_URL, MakeLimiter

PLENTY = 1e6


def limits(
    key: float = PLENTY, tenant: float = PLENTY, key_spans: float = PLENTY, tenant_spans: float = PLENTY, burst: float = 1.0
) -> RateLimits:
    return RateLimits(key, key_spans, tenant, tenant_spans, burst)


async def charge(limiter: RateLimiter, terms: RateLimits, tenant: str, key: str, spans: int = 1) -> Quota:
    quota = await limiter.acquire(tenant, key, spans, terms)
    assert quota is not None
    return quota


async def allowed(limiter: RateLimiter, terms: RateLimits, tenant: str, key: str, n: int, spans: int = 1) -> int:
    """Send n requests back to back; how many were let through."""
    return sum([(await charge(limiter, terms, tenant, key, spans)).allowed for _ in range(n)])


async def exhaust(limiter: RateLimiter, terms: RateLimits, tenant: str, key: str) -> RateLimited:
    """Acquire until denied; the denial."""
    for _ in range(1000):
        quota = await charge(limiter, terms, tenant, key)
        if not quota.allowed:
            return quota.denial()
    raise AssertionError("never rate limited")


async def test_a_full_burst_is_allowed_then_requests_are_denied(make_limiter: MakeLimiter, run_id: str) -> None:
    terms = limits(key=1.0, burst=5.0)  # key bucket: 5 requests
    assert await allowed(make_limiter(), terms, f"{run_id}-t", "k1", 8) == 5


async def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst(make_limiter: MakeLimiter, run_id: str) -> None:
    limiter, tenant = make_limiter(), f"{run_id}-t"
    terms = limits(key=4.0, burst=0.5)  # 2 tokens, one every 0.25 s
    await exhaust(limiter, terms, tenant, "k1")
    denied_at = time.monotonic()
    while time.monotonic() - denied_at < 3.0:  # a denied request charges nothing: polling delays nothing
        if (await charge(limiter, terms, tenant, "k1")).allowed:
            break
        await asyncio.sleep(0.005)
    waited = time.monotonic() - denied_at
    assert 0.1 <= waited <= 1.5, waited  # about 0.25 s: one token, not the burst, came back
    assert not (await charge(limiter, terms, tenant, "k1")).allowed
    await asyncio.sleep(1.0)  # four tokens' worth of time; the bucket holds two
    assert await allowed(limiter, terms, tenant, "k1", 5) == 2


async def test_each_key_has_its_own_bucket_and_the_tenants_caps_them_all(make_limiter: MakeLimiter, run_id: str) -> None:
    limiter = make_limiter()
    terms = limits(key=1.0, tenant=5 / 3, burst=3.0)  # per key 3 requests, per tenant 5
    tenant, other = f"{run_id}-t", f"{run_id}-other"
    assert await allowed(limiter, terms, tenant, "k1", 6) == 3  # the key's bucket
    # Three denials above charged nothing: the tenant has 2 of its 5 left for another key.
    assert await allowed(limiter, terms, tenant, "k2", 6) == 2
    assert await allowed(limiter, terms, tenant, "k3", 2) == 0
    assert await allowed(limiter, terms, other, "k4", 6) == 3  # another tenant's buckets are untouched


async def test_a_request_costs_its_spans_and_a_big_one_makes_a_small_one_wait(
    make_limiter: MakeLimiter, run_id: str
) -> None:
    limiter, tenant = make_limiter(), f"{run_id}-t"
    terms = limits(key_spans=1000.0, burst=2.0)  # 2,000 spans per key; requests are plenty
    assert await allowed(limiter, terms, tenant, "k1", 1, spans=1500)
    small = await charge(limiter, terms, tenant, "k1", spans=600)  # 500 left: one request, not 600 spans
    assert not small.allowed and small.denial().retry_after == 1  # 100 spans come back in 0.1 s
    assert await allowed(limiter, terms, tenant, "k1", 1, spans=500)  # what is left still passes
    # Spans count per key and per tenant alike: another key of the tenant has its own span budget.
    assert await allowed(limiter, terms, tenant, "k2", 1, spans=2000)


async def test_a_request_bigger_than_the_bucket_passes_when_it_is_full_and_leaves_a_debt(
    make_limiter: MakeLimiter, run_id: str
) -> None:
    limiter, tenant = make_limiter(), f"{run_id}-t"
    terms = limits(tenant_spans=1000.0, burst=1.0)  # the tenant's span bucket holds 1,000
    assert await allowed(limiter, terms, tenant, "k1", 1, spans=4000)  # never refused for good
    after = await charge(limiter, terms, tenant, "k2", spans=1)
    # 3,000 spans of debt at 1,000/s: about 3 s until one span may pass, whichever key sends it.
    assert not after.allowed and after.denial().retry_after in (3, 4)


async def test_a_denied_request_takes_from_no_bucket(make_limiter: MakeLimiter, run_id: str) -> None:
    limiter, tenant = make_limiter(), f"{run_id}-t"
    terms = limits(key=1.0, key_spans=0.5, burst=2.0)  # 2 requests, 1 span per key
    assert await allowed(limiter, terms, tenant, "k1", 1, spans=1)
    denied = await charge(limiter, terms, tenant, "k1", spans=1)  # no span left; a request would be
    assert not denied.allowed and "key-spans" in denied.denial().message
    assert dict(zip([b.policy for b in denied.buckets], denied.levels))["key-requests"] >= 1  # untouched
    empty = await charge(limiter, terms, tenant, "k1", spans=0)  # so a request of no spans still passes
    assert empty.allowed


@pytest.mark.parametrize(
    ("terms", "retry_after"),
    [
        (limits(key=0.25), 4),  # 1 token; the next comes in 4 s
        (limits(key=0.4), 3),  # 2.5 s, rounded up to whole seconds
        (limits(key=5.0), 1),  # 0.2 s: never less than 1
        (limits(tenant=0.25), 4),  # the tenant's bucket is the one that waits
    ],
)
async def test_retry_after_is_the_wait_in_whole_seconds_rounded_up(
    make_limiter: MakeLimiter, run_id: str, terms: RateLimits, retry_after: int
) -> None:
    denied = await exhaust(make_limiter(), terms, f"{run_id}-t", "k1")
    assert (denied.status, denied.retry_after) == (429, retry_after)


async def test_the_headers_parse_as_structured_fields_and_say_what_is_left(make_limiter: MakeLimiter, run_id: str) -> None:
    limiter, tenant = make_limiter(), f"{run_id}-t"
    terms = RateLimits(key_requests_per_second=5, key_spans_per_second=100, tenant_requests_per_second=10,
                       tenant_spans_per_second=1000, burst_seconds=2)  # fmt: skip
    headers = (await charge(limiter, terms, tenant, "k1", spans=30)).headers()
    policies = http_sf.parse(headers["RateLimit-Policy"].encode(), tltype="list")
    assert policies == [
        ("key-requests", {"q": 10, "w": 2, "pk": b"k1"}),
        ("key-spans", {"q": 200, "w": 2, "pk": b"k1"}),
        ("tenant-requests", {"q": 20, "w": 2, "pk": tenant.encode()}),
        ("tenant-spans", {"q": 2000, "w": 2, "pk": tenant.encode()}),
    ]
    left = dict(http_sf.parse(headers["RateLimit"].encode(), tltype="list"))
    assert {name: params["r"] for name, params in left.items()} == {
        "key-requests": 9, "key-spans": 170, "tenant-requests": 19, "tenant-spans": 1970,
    }  # fmt: skip
    assert {name: params["t"] for name, params in left.items()} == {
        "key-requests": 1, "key-spans": 1, "tenant-requests": 1, "tenant-spans": 1,
    }  # fmt: skip


async def test_ingest_replicas_share_the_redis_buckets(live_redis: aioredis.Redis, run_id: str) -> None:
    first, second = RedisRateLimiter(REDIS_URL), RedisRateLimiter(REDIS_URL)
    terms, tenant = limits(key=1.0, burst=4.0), f"{run_id}-t"
    try:
        assert await allowed(first, terms, tenant, "k1", 2) == 2
        assert await allowed(second, terms, tenant, "k1", 4) == 2
        assert await allowed(first, terms, tenant, "k1", 1) == 0
    finally:
        await first.close()
        await second.close()


async def test_redis_buckets_expire_once_they_would_be_full_again(live_redis: aioredis.Redis, run_id: str) -> None:
    limiter = RedisRateLimiter(REDIS_URL)
    try:  # every bucket holds 3 s of its rate: all are full again 3 s after a request
        await charge(limiter, RateLimits(2.0, 10.0, 1.0, 20.0, 3.0), f"{run_id}-t", "k1", spans=5)
    finally:
        await limiter.close()
    keys = sorted([k.decode() async for k in live_redis.scan_iter(match=f"llmscope:rl:{{{run_id}*")])
    assert [k.rsplit(":", 1)[-1] for k in keys] == ["k1", "tenant"]  # one hash each: requests and spans
    for key in keys:
        assert 0 < await live_redis.pttl(key) <= 4000  # refill time + 1 s: no key outlives its use


async def test_unreachable_redis_allows_requests_and_logs_a_warning(run_id: str, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused, and the port stays ours
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0")
        try:
            with caplog.at_level(logging.WARNING, logger="ingest.ratelimit"):
                answers = [await limiter.acquire(f"{run_id}-t", "k1", 100, limits(key=1.0)) for _ in range(20)]
        finally:
            await limiter.close()
    assert answers == [None] * 20  # the bucket would allow 1: the limiter cannot tell, and lets all through
    warnings = [r for r in caplog.records if r.name == "ingest.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line, not one per request
    assert "allowing requests" in warnings[0].getMessage()
