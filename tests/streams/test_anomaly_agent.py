"""The anomaly agent in a real worker (tansu, chDB): closed minutes of the rollups become points, a
latency spike becomes one stored episode and one notification, and a restarted worker continues
with its detectors (from the table) without reporting anything twice, also when its table is gone."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import faust
import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llmscope.kafka import ensure_topics
from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store
from llmscope.storage.migrate import apply_migrations
from schemas.anomalies import METRIC_NAMES, row_version
from schemas.notifications import Notification
from schemas.rollup import histogram_of
from streams.agents.anomalies import POINTS_BUFFER, START_BACK_MINUTES, TABLE, decode_point, encode_point
from streams.stages.anomaly import METRICS, MinutePoint, SeriesDetector, SeriesKey, last_closed_minute
from streams.stages.anomaly.detector import episode_id
from streams.stages.anomaly.series import UP
from streams.worker import create_worker_app
from tests.reliability.conftest import private_settings
from tests.waiting import eventually

HISTORY = 1500  # minutes of normal traffic: more than the day a latency baseline learns before it judges
SPIKE = 3  # the last minutes, five times slower


class _Database(Store):
    """The session store under another database, so only this test's workers see its rollups, and
    a count of the warm-ups (reads of a series' history going back more than a day)."""

    def __init__(self, inner: Store, database: str) -> None:
        self.inner, self.database = inner, database
        self.warmups = 0

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        if params and "tenant" in params and "minute_s" in sql and _days(params["lo"], params["hi"]) > 1:
            self.warmups += 1
        return self.inner.query_arrow(sql, params)

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:
        pass


def _days(lo: str, hi: str) -> float:
    return (datetime.fromisoformat(hi) - datetime.fromisoformat(lo)).total_seconds() / 86400


def _minute_text(minute: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(minute * 60))


def _rollup_row(tenant: str, minute: int, latency_ms: float, rng: random.Random) -> dict[str, Any]:
    durations = [latency_ms * rng.uniform(0.9, 1.1) for _ in range(20)]
    return {
        "tenant_id": tenant, "minute": _minute_text(minute), "service_name": "chat-api", "provider": "openai",
        "model": "gpt-4o", "operation": "chat", "status_code": "ok", "prompt_name": "", "prompt_version": "",
        "requests": 20, "errors": 0, "input_tokens": 2000, "output_tokens": 400, "cached_input_tokens": 0,
        "cache_write_tokens": 0, "reasoning_tokens": 0, "cost_usd": "0.01", "cost_known": 20,
        "duration_ns_sum": int(sum(durations) * 1e6), "latency_hist": {str(b): c for b, c in histogram_of(durations).items()}, "version": 1,
    }


def _seed(store: Store, tenant: str, last: int) -> None:
    """A day of steady traffic ending at minute `last`, whose last SPIKE minutes are 5x slower."""
    rng = random.Random(7)
    rows = [_rollup_row(tenant, m, 4000.0 if m > last - SPIKE else 800.0, rng) for m in range(last - HISTORY + 1, last + 1)]
    store.insert_rows(f"{store.database}.rollup_minute", rows)


async def _notifications(settings: Settings) -> list[Notification]:
    """Everything on the events topic so far."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata of every topic
        tps = [TopicPartition(settings.events_topic, p) for p in consumer.partitions_for_topic(settings.events_topic) or ()]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Notification] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [Notification.from_bytes(r.value) for r in records if r.value is not None]
        return found
    finally:
        await consumer.stop()


def _latency_opened(notes: list[Notification], tenant: str) -> list[str]:
    """Episode ids of the latency anomalies opened for the seeded service, once per notification."""
    return [n.event.data.episode_id for n in notes
            if n.tenant_id == tenant and n.event.type == "anomaly.opened" and n.event.data.metric == "latency_p95_ms"
            and n.event.data.service == "chat-api"]


async def _episodes(store: Store, tenant: str) -> list[dict[str, Any]]:
    df = await store.aquery(
        f"SELECT episode_id, is_overall, service_name, metric, direction, status, version "
        f"FROM {store.database}.anomalies FINAL WHERE tenant_id = {{t:String}} ORDER BY episode_id", {"t": tenant})
    return df.to_dicts()


@contextlib.asynccontextmanager
async def _worker(settings: Settings, store: Store, live: LiveHub | None = None) -> AsyncIterator[faust.App]:
    await ensure_topics(settings)
    app, _sink = create_worker_app(settings, store, live)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def _detector(app: faust.App, key: SeriesKey) -> SeriesDetector | None:
    saved = app.tables[TABLE].get(key.encode().encode())
    return None if saved is None else SeriesDetector.from_bytes(key, saved)


@pytest.fixture
async def private(settings: Settings, store: Store) -> tuple[Settings, _Database]:
    database = f"anomaly_{uuid.uuid4().hex[:8]}"
    private_store = _Database(store, database)
    apply_migrations(private_store, settings.retention_days)
    return private_settings(settings, "anomaly", clickhouse_database=database, anomaly_grace_seconds=0,
                            anomaly_tick_seconds=0.5, anomaly_points_topic=f"anomaly-points-{database}",
                            events_topic=f"events-{database}"), private_store


def test_the_contract_names_the_detectors_metrics() -> None:
    assert METRIC_NAMES == tuple(m.name for m in METRICS)


@pytest.mark.parametrize("point", [None, MinutePoint(20, 1, 0.25, 2400, 812.5), MinutePoint(3, 0, 0.0, 0, None)])
def test_a_point_survives_the_topic(point: MinutePoint | None) -> None:
    assert decode_point(encode_point(29_000_000, point)) == (29_000_000, point)


@pytest.mark.parametrize("value", [b"", b"{}", b'{"minute": "x", "point": null}', b'{"minute": 1, "point": [1]}', b"\xff"])
def test_anything_else_on_the_points_topic_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_point(value)


def test_versions_order_an_episodes_changes() -> None:
    assert row_version(10, "opened") < row_version(10, "updated") < row_version(10, "closed") < row_version(11, "opened")


def test_the_points_buffer_holds_a_tick_so_spans_do_not_wait_behind_warm_ups(settings: Settings, store: Store) -> None:
    """Faust's consumer hands out nothing while a stream's buffer is full. After an `up` restart the
    first point of every series warms its detector up, so a tick's points (a series and minute
    each) must fit in the anomaly agent's buffer, or the spans wait for the warm-ups (40 s for 420
    series in `bench/analytics_under_load.py`). `app.topic` drops `maxsize`: this is what the
    agent's stream really gets."""
    app, _sink = create_worker_app(settings, store)
    buffer = app.agents["anomalies"].channel.clone(is_iterator=False).queue
    assert buffer.maxsize == POINTS_BUFFER >= START_BACK_MINUTES * 2000  # a first tick over 2,000 series
    assert app.agents["spans"].channel.clone(is_iterator=False).queue.maxsize == settings.sink_batch_messages


async def test_a_latency_spike_is_one_episode_reported_once_across_restarts(private) -> None:
    settings, store = private
    tenant = f"anomaly-{uuid.uuid4().hex[:6]}"
    key = SeriesKey(tenant, "chat-api", "openai", "gpt-4o")
    last = last_closed_minute(time.time(), 0)
    _seed(store, tenant, last)

    live = LiveHub()
    watching = live.subscribe(tenant, lambda _m: True, 100)
    async with _worker(settings, store, live) as first:
        await _send_point(settings, key, b"not json")  # malformed: the agent drops it and goes on
        notes = await eventually(lambda: _opened_once(settings, tenant), timeout=60)
        episode = notes[0]
        seen: list[dict[str, Any]] = []

        async def published() -> dict[str, Any] | None:
            seen.extend(m.fields for m in await watching.next_batch(0.5) or [])
            return next((m for m in seen if m["episode_id"] == episode), None)

        message = await eventually(published, timeout=10)
        assert {"type": "anomaly", "change": "opened", "metric": "latency_p95_ms", "service": "chat-api",
                "status": "open", "direction": "up"}.items() <= message.items()
        rows = await _episodes(store, tenant)
        latency = [r for r in rows if r["metric"] == "latency_p95_ms"]
        assert {(r["is_overall"], r["service_name"], r["direction"], r["status"]) for r in latency} >= {(0, "chat-api", "up", "open")}
        assert episode in {r["episode_id"] for r in latency}
        assert store.warmups >= 1  # the new series learned its day of history from the store
        before = _detector(first, key)
        assert before is not None and before.open_episodes >= 1 and before.last_minute is not None

    # Restarted with its table: it judges the next minute with the saved detector, learning nothing anew.
    store.warmups = 0
    async with _worker(settings, store) as second:
        following = before.last_minute + 1
        await _send_point(settings, key, encode_point(following, MinutePoint(20, 0, 0.01, 2400, 4000.0)))
        await eventually(lambda: _judged_since(second, key, following), timeout=60)
        assert store.warmups == 0
        restored = _detector(second, key)
        assert restored is not None and restored.open_episodes >= 1
    assert _latency_opened(await _notifications(settings), tenant) == [episode]

    # Without its table (a new consumer group, as `up` restarted on an empty broker): it rebuilds the
    # detectors from the store, finds the same episode (open, or closed if the minutes of silence
    # after the seeded ones have added up meanwhile), and does not report its opening again.
    fresh = settings.model_copy(update={"worker_name": f"{settings.worker_name}-fresh",
                                        "anomaly_points_topic": f"{settings.anomaly_points_topic}-fresh"})
    async with _worker(fresh, store) as third:
        await eventually(lambda: _judged_since(third, key, last), timeout=60)
        rebuilt = _detector(third, key)
        assert rebuilt is not None and store.warmups >= 1
        latency = rebuilt.episodes[[m.name for m in METRICS].index("latency_p95_ms")]
        assert episode_id(key, "latency_p95_ms", UP, latency.start) == episode
    assert _latency_opened(await _notifications(settings), tenant) == [episode]
    assert [r["episode_id"] for r in await _episodes(store, tenant) if r["metric"] == "latency_p95_ms"].count(episode) == 1


async def _opened_once(settings: Settings, tenant: str) -> list[str]:
    return _latency_opened(await _notifications(settings), tenant)


def _judged_since(app: faust.App, key: SeriesKey, minute: int) -> bool:
    detector = _detector(app, key)
    return detector is not None and detector.last_minute is not None and detector.last_minute >= minute


async def _send_point(settings: Settings, key: SeriesKey, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.anomaly_points_topic, value, key=key.encode().encode())
    finally:
        await producer.stop()
