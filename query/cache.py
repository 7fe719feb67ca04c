"""Analytics result cache: one interface, an in-process TTL map and a Redis one (failing open, llmscope/redis.py).

Refresh-ahead (`refresh_after`): a hit stored longer ago than that is still answered at once, while
one background task per key and process computes the next value. An entry's age is its TTL minus
the time it has left (`ttl - remaining`): both backends already keep the expiry, so values stay the
plain response bodies, and in Redis the age is measured by Redis's own clock, whichever replica
stored the value.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from llmscope.errors import LLMScopeError
from llmscope.metrics import CACHE_REQUESTS
from llmscope.redis import FailOpenRedis
from llmscope.settings import Settings
from llmscope.storage import StoreError

log = logging.getLogger(__name__)

Compute = Callable[[], Awaitable[bytes]]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0  # backend failures answered by computing (fail open)


def cache_key(prefix: str, tenant_id: str, endpoint: str, params: Mapping[str, Any]) -> str:
    """Tenant in clear (per-tenant scans/invalidation), every parameter in the hash."""
    canonical = orjson.dumps({"endpoint": endpoint, "params": params}, option=orjson.OPT_SORT_KEYS, default=str)
    return f"{prefix}:{tenant_id}:{hashlib.sha256(canonical).hexdigest()}"


class ResultCache(abc.ABC):
    """Values are response bodies (bytes). `get_or_compute` returns (body, hit)."""

    def __init__(self, prefix: str, ttl_seconds: float, recent_ttl_seconds: float) -> None:
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.recent_ttl_seconds = recent_ttl_seconds
        self.stats = CacheStats()
        # Keys being recomputed ahead by this process; holding the tasks keeps them from being
        # garbage collected while they run.
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def ttl_for(self, end: datetime, now: datetime | None = None) -> float:
        # A range reaching into the last few minutes still changes as spans arrive: keep it briefly.
        now = now or datetime.now(timezone.utc)
        return self.recent_ttl_seconds if end > now - timedelta(minutes=5) else self.ttl_seconds

    def key(self, tenant_id: str, endpoint: str, params: Mapping[str, Any]) -> str:
        return cache_key(self.prefix, tenant_id, endpoint, params)

    async def get_or_compute(
        self, key: str, ttl: float, compute: Compute, refresh_after: float | None = None,
    ) -> tuple[bytes, bool]:
        """With `refresh_after`, a hit older than that is returned and recomputed in the background
        (see the module docstring). `ttl` must be the same on every call for a key: the age is
        reckoned from it."""
        if ttl <= 0:
            return await compute(), False
        cached = await self._get(key)
        if cached is not None:
            value, remaining = cached
            self.stats.hits += 1
            CACHE_REQUESTS.labels("hit").inc()
            if refresh_after is not None and ttl - remaining > refresh_after and key not in self._refreshing:
                task = asyncio.create_task(self._refresh(key, ttl, compute))
                self._refreshing[key] = task
                task.add_done_callback(lambda _: self._refreshing.pop(key, None))
            return value, True
        self.stats.misses += 1
        CACHE_REQUESTS.labels("miss").inc()
        value = await compute()
        await self._set(key, value, ttl)
        return value, False

    async def _refresh(self, key: str, ttl: float, compute: Compute) -> None:
        try:
            await self._set(key, await compute(), ttl)
        except (LLMScopeError, StoreError) as exc:  # its source is gone, or the store is down: the next
            await self._delete(key)                  # read computes it and answers that (404, 503)
            log.info("cache entry %s not refreshed: %s", key, exc)

    async def forget(self, key: str) -> None:
        """Drop one entry (its source changed), so the next read computes it afresh."""
        await self._delete(key)

    @abc.abstractmethod
    async def _get(self, key: str) -> tuple[bytes, float] | None:
        """The value and the seconds it has left, or None if absent or expired."""

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    async def _set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def close(self) -> None:
        return None


class NullCache(ResultCache):
    """Caching off (benchmarks, or a zero TTL): always computes."""

    def __init__(self) -> None:
        super().__init__("", 0.0, 0.0)

    def ttl_for(self, end: datetime, now: datetime | None = None) -> float:
        return 0.0

    async def _get(self, key: str) -> tuple[bytes, float] | None:
        return None

    async def _set(self, key: str, value: bytes, ttl: float) -> None:
        return None

    async def _delete(self, key: str) -> None:
        return None


class LocalCache(ResultCache):
    """In-process, bounded LRU with per-entry expiry; the `up` default."""

    def __init__(self, prefix: str, ttl_seconds: float, recent_ttl_seconds: float, max_entries: int = 2048) -> None:
        super().__init__(prefix, ttl_seconds, recent_ttl_seconds)
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def _get(self, key: str) -> tuple[bytes, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        remaining = entry[0] - time.monotonic()
        if remaining <= 0:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1], remaining

    async def _set(self, key: str, value: bytes, ttl: float) -> None:
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def _delete(self, key: str) -> None:
        self._entries.pop(key, None)


class RedisCache(ResultCache):
    """Shared across query replicas. Fails open: if Redis errs, the answer is computed (and counted
    in `stats.errors`)."""

    def __init__(self, url: str, prefix: str, ttl_seconds: float, recent_ttl_seconds: float) -> None:
        super().__init__(prefix, ttl_seconds, recent_ttl_seconds)
        self._redis = FailOpenRedis(url, what="query cache", instead="computing without it", log=log, on_error=self._failed)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        CACHE_REQUESTS.labels("error").inc()

    async def _get(self, key: str) -> tuple[bytes, float] | None:
        async def read() -> tuple[bytes | str | None, int]:
            async with self._redis.client.pipeline() as pipe:  # one round trip; MULTI: value and TTL agree
                pipe.get(key)
                pipe.pttl(key)
                value, pttl = await pipe.execute()
                return value, pttl

        missing: tuple[bytes | str | None, int] = (None, -2)
        value, pttl = await self._redis.run(read, missing)
        if value is None:
            return None
        # A key without an expiry (-1; this cache always sets one) counts as old: refreshing it sets one.
        return value if isinstance(value, bytes) else value.encode(), max(pttl, 0) / 1000

    async def _set(self, key: str, value: bytes, ttl: float) -> None:
        await self._redis.run(lambda: self._redis.client.set(key, value, px=max(1, int(ttl * 1000))), None)

    async def _delete(self, key: str) -> None:
        await self._redis.run(lambda: self._redis.client.delete(key), None)

    async def close(self) -> None:
        await self._redis.close()


def make_cache(settings: Settings) -> ResultCache:
    """Redis when configured, else in process; a zero TTL switches caching off."""
    if settings.query_cache_ttl_seconds <= 0:
        return NullCache()
    args = (settings.query_cache_prefix, settings.query_cache_ttl_seconds, settings.query_cache_recent_ttl_seconds)
    if url := settings.redis_connection_url:
        return RedisCache(url, *args)
    return LocalCache(*args)
