"""kill -9 the worker again and again under load: every acknowledged span is stored exactly once.

The worker runs as `llmscope worker` subprocesses over their own chDB directory, against a
tansu broker of this test's own; the ingest app runs in this process and counts what it acked."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmscope.broker import EmbeddedBroker
from llmscope.kafka import consumer_lag, ensure_topics
from llmscope.settings import Settings
from tests.ingest.conftest import make_client
from tests.processes import Worker
from tests.reliability.conftest import Load, committed, eventually, private_settings

pytestmark = pytest.mark.crash

KILLS = 2
REQUESTS, SPANS = 300, 20
RATE = 12.0  # requests/s: the load spans every kill and restart

# Runs in a fresh interpreter: chDB allows one data path per process and ours holds the session's.
INSPECT = """
import json, sys
from pathlib import Path
from llmscope.storage.chdb_engine import ChdbStore
s = ChdbStore(Path(sys.argv[1]), "llmscope")
db = s.database
one = lambda sql: s.query(sql).row(0)
out = {
    "final": one(f"SELECT count() FROM {db}.spans FINAL")[0],
    "raw": one(f"SELECT count() FROM {db}.spans")[0],
    "span_ids": s.query(f"SELECT span_id FROM {db}.spans FINAL")["span_id"].to_list(),
}
# Cost compared as exact decimal text: "to the cent" is the least it must hold to.
sums = "sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), sum(duration_ns)"
out["span_sums"] = list(one(f"SELECT count(), {sums}, toString(sum(cost_usd)) FROM {db}.spans FINAL"))
out["rollup_sums"] = list(one(
    f"SELECT sum(requests), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), "
    f"sum(duration_ns_sum), toString(sum(cost_usd)) FROM {db}.rollup_minute FINAL"
))
print(json.dumps(out, default=int))
"""


async def test_worker_killed_at_random_points_under_load_loses_and_doubles_nothing(tmp_path, store, settings, tenant_keys) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    broker = await asyncio.to_thread(EmbeddedBroker.start)
    worker = None
    try:
        s = private_settings(settings, "crash", data_dir=tmp_path, kafka_bootstrap_servers=broker.bootstrap)
        await ensure_topics(s)
        worker = Worker(s, tmp_path / "worker.log")
        assert await asyncio.to_thread(worker.run("migrate").wait) == 0
        worker.start()
        client, producer = await make_client(s, store)
        load, stop = Load(client, tenant_keys["a"], SPANS), asyncio.Event()
        sending = asyncio.create_task(load.steady(RATE, stop, at_least=REQUESTS))
        kills = []
        for _ in range(KILLS):
            # Kill only once this incarnation has made progress, so each kill lands mid-stream
            # (a random moment of fetching, normalising, inserting or committing).
            before = await committed(s)
            await eventually(lambda: _advanced(s, before), timeout=60)
            await asyncio.sleep(rng.uniform(0.0, 1.5))
            survivors = worker.kill()
            assert not survivors, f"the killed worker left processes running: {survivors}"
            kills.append(round(time.monotonic(), 1))
            worker.start()
        stop.set()
        await sending
        await client.aclose()
        await producer.close()
        await eventually(lambda: _drained(s), timeout=90)
        assert worker.stop() == 0
        stored = json.loads(await asyncio.to_thread(_inspect, tmp_path / "chdb"))
    finally:
        if worker:
            worker.kill_group()
        broker.stop()

    print(f"\nseed={seed} requests={load.sent} statuses={load.statuses} acked spans={len(load.acked)} "
          f"kills={len(kills)} stored FINAL={stored['final']} raw={stored['raw']} "
          f"redelivered rows not yet merged away by ReplacingMergeTree={stored['raw'] - stored['final']}")
    assert load.statuses == {200: load.sent}  # the worker's crashes never reach the ingest
    assert len(stored["span_ids"]) == len(set(stored["span_ids"]))  # nothing doubled
    assert set(stored["span_ids"]) == load.acked  # nothing lost, nothing invented
    assert stored["final"] == len(load.acked)
    # Rollup totals equal the sums over the raw spans, to the token and to the exact cost.
    assert stored["rollup_sums"] == stored["span_sums"]
    assert stored["span_sums"][-1] not in ("0", "\\N"), "the load's spans should be priced"


async def _advanced(s: Settings, before: int) -> bool:
    return await committed(s) > before


async def _drained(s: Settings) -> bool:
    return await consumer_lag(s, s.worker_name) == 0


def _inspect(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", INSPECT, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]
