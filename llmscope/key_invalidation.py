"""Revocations and disabled tenants reach every process that checks keys at once, not after its next
refresh of the key copy (auth.KeyResolver, every `api_key_cache_seconds`, which stays the bound
when Redis is absent or down).

In one process (`up`, tests) the admin API tells its own resolver directly. With Redis, it also
PUBLISHes `{"keys": [sha256…], "tenants": […]}` on one channel, which every ingest and query
replica SUBSCRIBEs to; each drops those keys from its copy and re-reads it. Pub/sub is at most
once: a replica disconnected from Redis misses the message and falls back on the refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import orjson

from llmscope.auth import KeyResolver
from llmscope.redis import FailOpenRedis

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5


class KeyInvalidation:
    def __init__(self, resolver: KeyResolver, redis_url: str | None = None, channel: str = "llmscope:keys") -> None:
        self._resolver = resolver
        self._channel = channel
        self._redis = (
            FailOpenRedis(redis_url, what="key invalidation", instead="relying on the key refresh", log=log)
            if redis_url else None
        )  # fmt: skip
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # subscribed now: invalidations published from here on arrive

    async def publish(self, key_hashes: Iterable[str] = (), tenants: Iterable[str] = ()) -> None:
        hashes, names = sorted(key_hashes), sorted(tenants)
        self._resolver.forget(hashes, names)
        if self._redis is not None:
            message = orjson.dumps({"keys": hashes, "tenants": names})
            redis = self._redis
            await redis.run(lambda: redis.client.publish(self._channel, message), None)

    def start(self) -> None:
        """Listen for other processes' invalidations (with Redis; nothing to do without)."""
        if self._redis is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("key invalidation (Redis) listener failed, reconnecting in %.1fs: %s: %s", delay, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            delay = 0.2

    async def _listen(self) -> None:
        assert self._redis is not None
        pubsub = self._redis.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
            self.listening.set()
            # A message published while we were away is missed: re-read the copy now.
            self._resolver.forget()
            while True:
                message = await pubsub.get_message(timeout=_POLL_SECONDS)
                if message and message.get("type") == "message":
                    try:
                        body = orjson.loads(message["data"])
                        self._resolver.forget(body.get("keys", ()), body.get("tenants", ()))
                    except (orjson.JSONDecodeError, AttributeError, TypeError):
                        log.warning("ignoring a malformed key invalidation message")
        finally:
            self.listening.clear()
            await pubsub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._redis is not None:
            await self._redis.close()
