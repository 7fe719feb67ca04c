"""The Redis adapter fails open one way for every use: fall back, warn once, back off, try again."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from llmscope.redis import FailOpenRedis

REDIS_URL = "redis://127.0.0.1:6379/0"  # the Redis every machine of ours and CI runs
log = logging.getLogger("tests.redis")


async def test_an_unreachable_redis_gives_the_fallback_one_warning_and_a_retry_after_the_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[Exception] = []
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        redis = FailOpenRedis(
            f"redis://127.0.0.1:{closed.getsockname()[1]}/0", what="a test", instead="doing without",
            log=log, backoff_seconds=0.3, on_error=errors.append,
        )  # fmt: skip
        try:
            with caplog.at_level(logging.WARNING, logger="tests.redis"):
                assert [await redis.run(lambda: redis.client.get("k"), "fallback") for _ in range(5)] == ["fallback"] * 5
                assert len(errors) == 1 and not redis.available  # tried once, then backing off
                await asyncio.sleep(0.35)
                assert await redis.run(lambda: redis.client.get("k"), "fallback") == "fallback"
        finally:
            await redis.close()
    assert len(errors) == 2  # tried again once the back-off ended
    warnings = [r.getMessage() for r in caplog.records if r.name == "tests.redis"]
    assert len(warnings) == 2 and warnings[0].startswith("a test (Redis) unavailable, doing without for 0s")


async def test_a_reachable_redis_answers() -> None:
    redis = FailOpenRedis(REDIS_URL, what="a test", instead="doing without", log=log)
    try:
        assert await redis.run(lambda: redis.client.ping(), False) is True and redis.available
    finally:
        await redis.close()
