"""Redis over TLS: a `rediss://` URL with LLMSCOPE_REDIS_CA_FILE reaches the real Redis through a
TLS-terminating proxy, for every use that connects (here the rate limiter and the shared adapter);
a CA that did not sign the proxy's certificate makes the use fail open, as any Redis failure does."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from ingest.ratelimit import RedisRateLimiter
from llmscope.redis import FailOpenRedis
from llmscope.settings import load_settings
from schemas.rate_limits import RateLimits
from tests.tls_proxy import Pki, TlsProxy, tls_proxy

log = logging.getLogger("tests.redis_tls")


@pytest.fixture(scope="module")
def tls_redis(pki: Pki) -> Iterator[TlsProxy]:
    with tls_proxy(("127.0.0.1", 6379), pki.server_context()) as proxy:
        yield proxy


async def test_rediss_url_with_the_ca_file_talks_to_redis_through_tls(tls_redis: TlsProxy, pki: Pki) -> None:
    settings = load_settings(redis_url=f"rediss://{tls_redis.address}/0", redis_ca_file=pki.ca_file)
    assert settings.redis_connection_url is not None
    errors: list[Exception] = []
    redis = FailOpenRedis(settings.redis_connection_url, what="a test", instead="doing without", log=log, on_error=errors.append)
    try:
        assert await redis.run(lambda: redis.client.set("llmscope-test:tls", b"over tls", px=10_000), None) is True
        assert await redis.run(lambda: redis.client.get("llmscope-test:tls"), None) == b"over tls"
        assert errors == []
    finally:
        await redis.close()
    limiter = RedisRateLimiter(settings.redis_connection_url)  # as the ingest role builds it
    try:
        quota = await limiter.acquire("redis-tls-tenant", "key", 1, RateLimits.defaults(settings))
    finally:
        await limiter.close()
    assert quota is not None and quota.allowed  # None would mean Redis did not answer (fail open)


async def test_a_ca_that_did_not_sign_the_certificate_fails_open_with_the_reason(
    tls_redis: TlsProxy, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(redis_url=f"rediss://{tls_redis.address}/0", redis_ca_file=pki.other_ca_file)
    assert settings.redis_connection_url is not None
    errors: list[Exception] = []
    redis = FailOpenRedis(settings.redis_connection_url, what="a test", instead="doing without", log=log, on_error=errors.append)
    try:
        with caplog.at_level(logging.WARNING, logger="tests.redis_tls"):
            assert await redis.run(lambda: redis.client.ping(), "fallback") == "fallback"
    finally:
        await redis.close()
    assert len(errors) == 1
    assert "a test (Redis) unavailable" in caplog.text and "CERTIFICATE_VERIFY_FAILED" in caplog.text
