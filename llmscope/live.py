"""Live fan-out: the worker publishes each stored batch; every query process delivers it to its
subscribed sockets, filtered, through a bounded queue per subscriber.

Two hubs behind one interface:
- `LiveHub`: in process. `llmscope up` runs worker and query in one process, so publishing is a
  direct hand-over to the subscriptions.
- `RedisLiveHub`: production, where workers and query replicas are separate processes. The worker
  PUBLISHes one message per (batch, tenant) on the channel `<prefix>:<tenant>`; each query replica
  SUBSCRIBEs to the channels of the tenants it has sockets for, so a replica only receives what
  someone there is watching, and every replica sees every stored span of those tenants.

Why Redis pub/sub rather than a Kafka topic read by every replica without a consumer group: the
production deployment already runs Redis; pub/sub delivers in well under a millisecond with no
fetch polling; nothing is stored, and a live tail needs nothing stored (the query API is the
record); and a replica receives only its tenants' channels instead of every tenant's spans. The
cost is at-most-once delivery: a replica disconnected from Redis misses what was published
meanwhile, and tells its clients so (a `dropped` message with `count: null`).

Memory is bounded per subscriber: a queue of at most `maxsize` messages, and a message is encoded
once and shared by every queue holding it (a queue costs a reference per message). When a client reads
slower than spans arrive, new messages are counted and dropped, and the client is told how many
it missed before the next message it gets. Filters run at `offer`, so messages a client does not
want never take queue space.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from llmscope.redis import FailOpenRedis
from llmscope.settings import Settings
from schemas import span_columns
from schemas.live import span_message

log = logging.getLogger(__name__)

Predicate = Callable[[Mapping[str, Any]], bool]
_OFFLOAD_BYTES = 256 * 1024  # parsing a large batch goes to a thread, off the event loop
_POLL_SECONDS = 0.1


@dataclass(slots=True)
class LiveMessage:
    """A message and its JSON text, encoded once for every socket that gets it."""

    fields: dict[str, Any]
    text: str

    @classmethod
    def of(cls, fields: dict[str, Any]) -> LiveMessage:
        return cls(fields, orjson.dumps(fields).decode())


class Subscription:
    """One socket's bounded queue. `offer` never blocks and never grows past `maxsize`."""

    def __init__(self, tenant_id: str, accepts: Predicate, maxsize: int) -> None:
        self.tenant_id = tenant_id
        self.accepts = accepts
        self.maxsize = maxsize
        self.dropped = 0  # messages lost to a full queue since the client was last told
        self.interrupted = False  # the hub lost messages it cannot count (fan-out reconnect)
        self._queue: deque[LiveMessage] = deque()
        self._ready = asyncio.Event()

    def offer(self, message: LiveMessage) -> None:
        if not self.accepts(message.fields):
            return
        if len(self._queue) >= self.maxsize:
            self.dropped += 1
        else:
            self._queue.append(message)
        self._ready.set()

    def interrupt(self) -> None:
        self.interrupted = True
        self._ready.set()

    async def next_batch(self, timeout: float) -> list[LiveMessage] | None:
        """Everything queued (possibly nothing, if only a drop is to be reported); None after
        `timeout` seconds without anything."""
        if not self._queue and not self.dropped and not self.interrupted:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def take_loss(self) -> dict[str, Any] | None:
        """The `dropped` notice the client is owed, if any."""
        if self.interrupted:
            self.interrupted, self.dropped = False, 0
            return {"type": "dropped", "count": None, "reason": "the live feed was interrupted; reload to catch up"}
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return {"type": "dropped", "count": count, "reason": "client reading slower than spans arrive"}
        return None


class LiveHub:
    """In-process fan-out (the `up` hub, and the local half of the Redis hub)."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    def subscribe(self, tenant_id: str, accepts: Predicate, maxsize: int) -> Subscription:
        subscription = Subscription(tenant_id, accepts, maxsize)
        self._subscriptions.setdefault(tenant_id, set()).add(subscription)
        self._tenant_added(tenant_id)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subs = self._subscriptions.get(subscription.tenant_id)
        if subs is None:
            return
        subs.discard(subscription)
        if not subs:
            del self._subscriptions[subscription.tenant_id]
            self._tenant_removed(subscription.tenant_id)

    async def publish_spans(self, spans: bytes) -> None:
        """Publish a stored batch: spans-table rows as the sink inserted them, an Arrow stream
        (schemas/span_columns.py). Never raises: the live stream must not stop the worker."""
        if not self._wanted():
            return
        try:
            if len(spans) > _OFFLOAD_BYTES:
                by_tenant = await asyncio.to_thread(_messages_by_tenant, spans)
            else:
                by_tenant = _messages_by_tenant(spans)
            for tenant_id, messages in by_tenant.items():
                await self.publish(tenant_id, messages)
        except Exception:
            log.exception("live publish failed; the spans are stored, only the live feed missed them")

    async def publish(self, tenant_id: str, messages: list[dict[str, Any]]) -> None:
        self._deliver(tenant_id, messages)

    def _deliver(self, tenant_id: str, messages: list[dict[str, Any]]) -> None:
        subs = self._subscriptions.get(tenant_id)
        if not subs:
            return
        encoded = [LiveMessage.of(m) for m in messages]
        for subscription in list(subs):
            for message in encoded:
                subscription.offer(message)

    def _wanted(self) -> bool:
        return bool(self._subscriptions)

    def _tenant_added(self, tenant_id: str) -> None:
        return None

    def _tenant_removed(self, tenant_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisLiveHub(LiveHub):
    """Redis pub/sub between worker processes and query replicas. Publishing fails open (logged,
    then skipped for a while: llmscope/redis.py); the reader reconnects and re-subscribes by itself."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self._redis = FailOpenRedis(
            url, what="live fan-out", instead="skipping live publishes", log=log, timeout=2.0, connect_timeout=1.0
        )
        self._prefix = prefix
        self._reader: asyncio.Task[None] | None = None

    def channel(self, tenant_id: str) -> str:
        return f"{self._prefix}:{tenant_id}"

    def _wanted(self) -> bool:
        return True  # subscribers elsewhere: a replica we cannot see may be watching

    async def publish(self, tenant_id: str, messages: list[dict[str, Any]]) -> None:
        await self._redis.run(lambda: self._redis.client.publish(self.channel(tenant_id), orjson.dumps(messages)), None)

    def _tenant_added(self, tenant_id: str) -> None:
        # The reader applies (un)subscriptions between reads, within `_POLL_SECONDS`.
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        delay = 0.2
        while self._subscriptions:
            try:
                await self._read()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live fan-out (Redis) reader failed, reconnecting in %.1fs: %s: %s", delay, type(exc).__name__, exc)
                for subs in self._subscriptions.values():
                    for subscription in subs:
                        subscription.interrupt()
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _read(self) -> None:
        pubsub = self._redis.client.pubsub(ignore_subscribe_messages=True)
        listening: set[str] = set()
        try:
            while self._subscriptions:
                wanted = {self.channel(t) for t in self._subscriptions}
                if wanted != listening:
                    if added := wanted - listening:
                        await pubsub.subscribe(*added)
                    if removed := listening - wanted:
                        await pubsub.unsubscribe(*removed)
                    listening = wanted
                message = await pubsub.get_message(timeout=_POLL_SECONDS)
                if message and message.get("type") == "message":
                    tenant_id = message["channel"].decode()[len(self._prefix) + 1 :]
                    self._deliver(tenant_id, orjson.loads(message["data"]))
        finally:
            await pubsub.aclose()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._redis.close()


def _messages_by_tenant(spans: bytes) -> dict[str, list[dict[str, Any]]]:
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for row in span_columns.rows(spans):
        by_tenant.setdefault(row["tenant_id"], []).append(span_message(row))
    return by_tenant


def make_hub(settings: Settings) -> LiveHub:
    """Redis when configured (any number of workers and query replicas), else in process."""
    if url := settings.redis_connection_url:
        return RedisLiveHub(url, settings.live_channel_prefix)
    return LiveHub()
