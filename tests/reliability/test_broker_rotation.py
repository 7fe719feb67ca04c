"""`up` replaces its embedded broker under load (llmscope/broker_rotation.py): the old broker is
stopped (its memory goes back), every acknowledged span is stored once, a CPU-stage process
killed during a rotation changes nothing, and a kill -9 of `up` during one leaves no process and
doubles nothing after the restart."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.processes import alive, cmdline, cpu_stage, descendants, gone
from tests.reliability.conftest import Load
from tests.reliability.test_up_lifecycle import assert_everything_stored_once, summary, trace_ids

pytestmark = pytest.mark.crash

ROTATING = "rotating the embedded broker"
ROTATED = "broker rotated to"


@pytest.fixture(autouse=True)
def rotate_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotation every few seconds (by age: a test cannot fill the broker to its memory threshold)."""
    monkeypatch.setenv("LLMSCOPE_BROKER_ROTATE_SECONDS", "3")
    monkeypatch.setenv("LLMSCOPE_BROKER_ROTATE_CHECK_SECONDS", "0.5")


class Paced:
    """OTLP requests of 20 spans at `rate` per second from a thread of its own, until stopped: a
    load that spans every step of the rotations, small enough to list back in a few seconds."""

    def __init__(self, url: str, key: str, rate: float = 25.0) -> None:
        self.load = Load(httpx.AsyncClient(base_url=url, timeout=10), key, spans=20)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(rate)), daemon=True)
        self._thread.start()

    async def _run(self, rate: float) -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
            stop.set()

        await asyncio.gather(watch(), self.load.steady(rate, stop))
        await self.load.client.aclose()

    @property
    def acked(self) -> int:
        return len(self.load.acked)

    def stop(self) -> Load:
        self._stop.set()
        self._thread.join(30)
        return self.load


class Sampled:
    """The values `measure` gives every 20 ms on a thread of its own, until stopped."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(measure,), daemon=True)
        self._thread.start()

    def _run(self, measure: Callable[[], int]) -> None:
        while not self._stop.wait(0.02):
            self.seen.add(measure())

    def stop(self) -> set[int]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def log_count(up: UpProcess, text: str) -> int:
    return up.log.read_text().count(text)


def brokers(up: UpProcess) -> list[int]:
    return [pid for pid in descendants(up.process.pid) if "tansu" in cmdline(pid)]


def test_up_rotates_its_broker_under_load_stops_the_old_one_and_stores_every_span_once(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        first = brokers(up)
        assert len(first) == 1, first
        load = Paced(up.ingest_url, up.key)
        stages = Sampled(lambda: len(cpu_stage(up.process.pid)))
        wait_for(lambda: log_count(up, ROTATED) >= 2, timeout=60)
        total = load.stop()
        # Every generation of workers shares one CPU stage: a rotation does not double its memory.
        assert stages.stop() == {1}, f"CPU-stage processes seen during the rotations: {stages.seen}"
        assert not gone(first), "the first broker still runs after the rotations: its memory is not given back"
        now = wait_for(lambda: brokers(up) if len(brokers(up)) == 1 else None, interval=0.02)  # between rotations
        assert now != first, now
        assert set(total.statuses) == {200}, f"the ingest answered {total.statuses} while its broker was replaced"
        assert_everything_stored_once(up, total)
    finally:
        assert stop_up(up) == 0
    assert "Traceback" not in up.log.read_text()


def test_a_cpu_stage_killed_during_a_rotation_loses_and_doubles_nothing(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        load = Paced(up.ingest_url, up.key)
        wait_for(lambda: log_count(up, ROTATED) >= 1, timeout=60)  # the load runs: the CPU stage too
        wait_for(lambda: log_count(up, ROTATING) >= 2, timeout=60, interval=0.02)
        killed = cpu_stage(up.process.pid)
        assert killed, "no CPU-stage process to kill"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: log_count(up, ROTATED) >= 2, timeout=60)
        total = load.stop()
        assert not alive(killed)
        assert_everything_stored_once(up, total)
    finally:
        assert stop_up(up) == 0


def test_kill_9_of_up_during_a_rotation_leaves_no_process_and_doubles_nothing_after_a_restart(tmp_path: Path) -> None:
    rng = random.Random()
    up = start_up(tmp_path)
    load = Paced(up.ingest_url, up.key)
    try:
        wait_for(lambda: log_count(up, ROTATING) >= 1, timeout=60, interval=0.02)
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere in the switch, the drain or the worker's restart
        family = descendants(up.process.pid)
        assert len([p for p in family if "tansu" in cmdline(p)]) == 2, "both brokers run during a rotation"
        up.process.kill()
        up.process.wait(10)
        assert not gone(family), "processes outlived up after kill -9 during a rotation"
    finally:
        before = load.stop()
        for pid in descendants(up.process.pid):
            os.kill(pid, signal.SIGKILL)

    again = start_up(tmp_path)
    try:
        after = Paced(again.ingest_url, again.key)
        wait_for(lambda: after.acked >= 500, timeout=60)
        after_total = after.stop()
        wait_for(lambda: after_total.acked_traces <= set(trace_ids(again)), timeout=60)
        ids = trace_ids(again)
        # kill -9 loses what the broker held and no worker had stored yet (a known limit of `up`);
        # nothing else, and nothing twice.
        assert len(ids) == len(set(ids)), "a span stored twice"
        assert set(ids) <= before.acked_traces | after_total.acked_traces
        wait_for(lambda: summary(again)["requests"] >= len(ids), timeout=30)
        assert summary(again)["requests"] == len(ids), "rollups count what the traces do not hold, or twice"
    finally:
        assert stop_up(again) == 0
