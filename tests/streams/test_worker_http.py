"""The worker role's own HTTP server: /metrics that move as it stores spans and parks dead letters,
/health, and /ready that turns 503 with the store's error while the sink's writes fail, and back
once they land."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from llmscope.broker import free_port
from llmscope.http import make_server
from llmscope.kafka import ensure_topics
from llmscope.settings import Settings
from llmscope.storage import Store
from streams.health import create_worker_http_app
from streams.worker import create_worker_app
from tests.ingest.conftest import make_client
from tests.processes import Worker
from tests.prometheus import samples, value
from tests.reliability.conftest import FaultyStore, Load, eventually, new_tenant, private_settings


async def _get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return await client.get(url)
    except httpx.TransportError:
        return None


async def test_worker_role_serves_health_and_metrics_that_move_with_traffic(tmp_path, settings: Settings, store: Store) -> None:
    """`llmscope worker` as deployed (its own process and chDB directory)."""
    s = private_settings(settings, "observe", data_dir=tmp_path)
    await ensure_topics(s)
    port = free_port()
    worker = Worker(s, tmp_path / "worker.log", worker_port=str(port))
    assert await asyncio.to_thread(worker.run("migrate").wait) == 0
    worker.start()
    base = f"http://127.0.0.1:{port}"
    client, producer = await make_client(s, store)
    try:
        health = await eventually(lambda: _get(f"{base}/health"), timeout=60)
        assert health.status_code == 200
        before = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
        _, key = new_tenant(store, "observe")
        load = Load(client, key, spans=10)
        for _ in range(5):
            assert await load.one() == 200

        async def stored_all() -> str | None:
            text = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
            rows = value(text, "llmscope_sink_batch_rows_sum", table="spans") - value(before, "llmscope_sink_batch_rows_sum", table="spans")
            return text if rows == 50 else None

        after = await eventually(stored_all, timeout=60)
        assert value(after, "llmscope_sink_write_duration_seconds_count", table="spans") >= 1
        assert value(after, "llmscope_sink_failing_writes") == 0
        # Every partition of the ingest topic has a lag sample, and the backlog is gone once stored.
        lag = await eventually(lambda: _lag_drained(base, s), timeout=30)
        assert {p for p, _ in lag} == {str(p) for p in range(s.topic_partitions)}
        ready = await _get(f"{base}/ready")
        assert ready is not None and ready.status_code == 200 and ready.json()["rows_written"] >= 50
    finally:
        await client.aclose()
        await producer.close()
        assert await asyncio.to_thread(worker.stop) == 0
        worker.kill_group()
    # Not a terminal: its log lines are JSON objects, naming the role.
    lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines() if line.startswith("{")]
    assert any(rec["role"] == "worker" and "consuming" in rec["message"] for rec in lines), lines[:5]


async def _lag_drained(base: str, s: Settings) -> list[tuple[str, float]] | None:
    text = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
    lag = [
        (dict(labels)["partition"], v)
        for (name, labels), v in samples(text).items()
        if name == "llmscope_consumer_lag_messages" and dict(labels).get("topic") == s.ingest_topic
    ]
    return lag if lag and all(v == 0 for _, v in lag) else None


@pytest.fixture
async def faulty_worker(settings: Settings, store: Store) -> AsyncIterator[tuple[Settings, FaultyStore, str]]:
    """A worker over a store that fails on demand, with its HTTP server on a loopback port."""
    s = private_settings(settings, "ready")
    await ensure_topics(s)
    faulty = FaultyStore(store)
    app, sink = create_worker_app(s, faulty)
    port = free_port()
    server = make_server(create_worker_http_app(sink), "127.0.0.1", port)
    serving = asyncio.create_task(server.serve())
    await app.start()
    yield s, faulty, f"http://127.0.0.1:{port}"
    faulty.fail_until = 0.0
    await app.stop()
    server.should_exit = True
    await serving


async def test_ready_is_503_with_the_error_while_the_store_fails_and_200_again_after(faulty_worker, store: Store) -> None:
    s, faulty, base = faulty_worker
    _, key = new_tenant(store, "ready")
    client, producer = await make_client(s, store)
    try:
        await eventually(lambda: _get(f"{base}/ready"), timeout=30)
        assert (await _get(f"{base}/ready")).status_code == 200  # type: ignore[union-attr]
        faulty.fail_until = float("inf")
        load = Load(client, key, spans=5)
        assert await load.one() == 200

        async def unready() -> httpx.Response | None:
            r = await _get(f"{base}/ready")
            return r if r is not None and r.status_code == 503 else None

        r = await eventually(unready, timeout=60)
        body = r.json()
        assert body["status"] == "unavailable" and body["checks"] == {"sink": False}
        assert "injected: ClickHouse is down" in body["errors"]["sink"]
        metrics = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
        assert value(metrics, "llmscope_sink_failing_writes") >= 1
        assert value(metrics, "llmscope_store_retries_total", table="spans") >= 1

        faulty.fail_until = 0.0

        async def ready_again() -> bool:
            r = await _get(f"{base}/ready")
            return r is not None and r.status_code == 200

        await eventually(ready_again, timeout=60)
    finally:
        await client.aclose()
        await producer.close()


async def test_a_poison_message_is_counted_as_a_dead_letter(faulty_worker) -> None:
    s, _, base = faulty_worker
    before = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
    raw = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all")
    await raw.start()
    try:
        await raw.send_and_wait(s.ingest_topic, b"no headers, not a message of ours")
    finally:
        await raw.stop()

    async def counted() -> bool:
        text = (await _get(f"{base}/metrics")).text  # type: ignore[union-attr]
        return value(text, "llmscope_dead_letters_total", kind="message") - value(before, "llmscope_dead_letters_total", kind="message") == 1

    await eventually(counted, timeout=60)
