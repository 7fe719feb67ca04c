"""What the reliability tests share: private topics and consumer groups, a store that fails on
purpose, and a load generator that remembers exactly which spans the ingest acknowledged."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import pyarrow as pa
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from llmscope.auth import create_key
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from tests.otlp_factory import llm_span, request_of
from tests.waiting import eventually  # noqa: F401  (the reliability tests import it from here)

PROTOBUF = {"content-type": "application/x-protobuf"}


def private_settings(settings: Settings, name: str, **overrides: Any) -> Settings:
    """The session settings with this test's own topics and consumer group, so no other worker
    (tests/streams/test_worker.py runs one on the session topics) takes its messages."""
    tag = f"{name}-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={"ingest_topic": f"{tag}-ingest", "deadletter_topic": f"{tag}-dlq", "events_topic": f"{tag}-events",
                "worker_name": f"{tag}-worker", **overrides}
    )


def new_tenant(store: Store, name: str) -> tuple[str, str]:
    tenant = f"{name}-{uuid.uuid4().hex[:8]}"
    return tenant, create_key(store, tenant, name, {"ingest", "read"})


class FaultyStore(Store):
    """The real store, except that span inserts fail while `failing` says so, and each insert may
    first sleep. `fail_after_write` fails *after* the write landed: the ambiguous failure (a
    timeout on the way back) that only an insert deduplication token makes harmless."""

    def __init__(self, inner: Store, *, delay: float = 0.0, fail_after_write: bool = False) -> None:
        self.inner, self.database = inner, inner.database
        self.delay, self.fail_after_write = delay, fail_after_write
        self.fail_until = 0.0  # time.monotonic() deadline
        self.fail_calls = 0  # or: this many more calls fail
        self.attempts = self.failures = 0
        self.failed: list[tuple[float, str]] = []  # (when, dedup token) of every failed insert
        self.stuck: str | None = None  # `hold_next_batch`: this batch fails until released
        self._hold = False

    def hold_next_batch(self) -> None:
        """The next batch inserted fails on every retry (until `release`); the others succeed."""
        self._hold, self.stuck = True, None

    def release(self) -> None:
        self._hold = False

    def _failing(self, token: str) -> bool:
        if self._hold and self.stuck is None:
            self.stuck = token
        return time.monotonic() < self.fail_until or self.fail_calls > 0 or (self._hold and token == self.stuck)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.inner.query_arrow(sql, params)

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        self.attempts += 1
        if self.delay:
            time.sleep(self.delay)
        token = str((settings or {}).get("insert_deduplication_token"))
        # Span inserts only: the worker's other writers (anomaly points, episodes) retry on their
        # own, and their failures must not count as the sink's (the tests count and time those).
        if table.rsplit(".", 1)[-1] == "spans" and self._failing(token):
            self.fail_calls = max(0, self.fail_calls - 1)
            self.failures += 1
            self.failed.append((time.monotonic(), token))
            if self.fail_after_write:
                self.inner.insert(table, body, fmt, settings)
            raise StoreError("injected: ClickHouse is down")
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:  # the session store is closed by its own fixture
        pass


class Load:
    """Sends OTLP requests of `spans` spans each; `acked` holds the span ids of every 200
    (unless `remember` is off, for memory measurements); `padding` adds bytes to each span."""

    def __init__(self, client: httpx.AsyncClient, key: str, spans: int = 20, padding: int = 0, remember: bool = True) -> None:
        self.client, self.headers, self.spans = client, {**PROTOBUF, "authorization": f"Bearer {key}"}, spans
        self.extra = {"padding": os.urandom(padding // 2).hex()} if padding else None
        self.remember = remember
        self.acked: set[str] = set()  # span ids
        self.acked_traces: set[str] = set()
        self.acked_input_tokens = 0
        self.statuses: dict[int, int] = {}
        self.sent = 0

    async def post(self) -> httpx.Response:
        tokens = list(os.urandom(self.spans))  # 0..255 input tokens each
        spans = [llm_span(input_tokens=t, output_tokens=7, extra=self.extra) for t in tokens]
        body = request_of(spans).SerializeToString()
        r = await self.client.post("/v1/traces", content=body, headers=self.headers)
        self.sent += 1
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        if r.status_code == 200 and self.remember:
            self.acked.update(s.span_id.hex() for s in spans)
            self.acked_traces.update(s.trace_id.hex() for s in spans)
            self.acked_input_tokens += sum(tokens)
        return r

    async def one(self) -> int:
        try:
            return (await self.post()).status_code
        except httpx.TransportError:  # the ingest stopped listening: not acknowledged, not counted
            self.sent += 1
            self.statuses[0] = self.statuses.get(0, 0) + 1
            return 0

    async def steady(self, rate: float, stop: asyncio.Event, at_least: int = 0) -> None:
        """`rate` requests per second until `stop` is set and at least `at_least` were sent."""
        start = time.monotonic()
        while not (stop.is_set() and self.sent >= at_least):
            await self.one()
            await asyncio.sleep(max(0.0, start + self.sent / rate - time.monotonic()))


async def committed(settings: Settings) -> int:
    """Sum of the worker group's committed offsets on the ingest topic (its progress)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        tps = [TopicPartition(settings.ingest_topic, p) for p in range(settings.topic_partitions)]
        offsets = await admin.list_consumer_group_offsets(settings.worker_name, partitions=tps)
        return sum(max(0, o.offset) for o in offsets.values())
    finally:
        await admin.close()
