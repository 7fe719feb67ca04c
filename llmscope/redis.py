"""The Redis adapter: every Redis connection is opened here, and every use of it fails open alike.

Redis holds nothing the pipeline cannot do without: rate-limit buckets, cached analytics answers,
the live fan-out. So when it errs or does not answer, a use falls back to what it does without
Redis (allow the request, compute the answer, skip the live publish), says so in one warning, and
leaves Redis alone for `backoff_seconds`: an outage costs one short timeout per back-off period,
not one per request, and never an error to a client. Losing telemetry or answers would be worse
than briefly exceeding a quota or recomputing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")


class FailOpenRedis:
    """A Redis client for one use (`what`): `run` an operation, or get `fallback` while Redis fails.

    Warnings go to the using component's logger, naming what it does instead (`instead`)."""

    def __init__(
        self, url: str, *, what: str, instead: str, log: logging.Logger,
        timeout: float = 0.5, connect_timeout: float = 0.5, backoff_seconds: float = 5.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:  # fmt: skip
        import redis.asyncio as redis

        self.client: Redis = redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=connect_timeout)
        self._what, self._instead, self._log = what, instead, log
        self._backoff = backoff_seconds
        self._on_error = on_error
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        """False while backing off after a failure."""
        return time.monotonic() >= self._down_until

    async def run(self, operation: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`operation`'s result, or `fallback` if Redis fails now or failed within the back-off."""
        if not self.available:
            return fallback
        try:
            return await operation()
        except Exception as exc:  # redis-py raises several families; all mean "no answer"
            self._failed(exc)
            return fallback

    def _failed(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        if self.available:
            # str(): redis-py's repr says only "network:ConnectionError", not why (refused, TLS, auth).
            self._log.warning(
                "%s (Redis) unavailable, %s for %.0fs: %s: %s", self._what, self._instead, self._backoff,
                type(exc).__name__, exc,
            )
        self._down_until = time.monotonic() + self._backoff

    async def close(self) -> None:
        await self.client.aclose()
