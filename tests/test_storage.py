"""The storage adapter: parameters reach the engine exactly as given, whatever they contain."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmscope.storage import Store

TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "quote's", "\\t literal", "nul\0byte", "ünïcødé", ""]


@pytest.mark.parametrize("value", TRICKY)
def test_string_parameter_round_trips_exactly(store: Store, value: str) -> None:
    assert store.query("SELECT {v:String} AS v", {"v": value})["v"][0] == value


def test_array_parameter_round_trips_exactly(store: Store) -> None:
    assert store.query("SELECT {v:Array(String)} AS v", {"v": TRICKY})["v"][0].to_list() == TRICKY


def test_numbers_and_booleans(store: Store) -> None:
    row = store.query("SELECT {i:Int64} AS i, {f:Float64} AS f, {b:Bool} AS b", {"i": -7, "f": 0.25, "b": True}).row(0)
    assert row == (-7, 0.25, True)


def _memory_worker_wakes() -> int:
    """Context switches of the embedded engine's MemoryWorker threads so far (they sleep between reads)."""
    tasks = [t for t in Path("/proc/self/task").iterdir() if (t / "comm").read_text().strip() == "MemoryWorker"]
    assert tasks, "no MemoryWorker thread: the engine has changed"
    return sum(int(line.split()[1]) for t in tasks for line in (t / "status").read_text().splitlines()
               if "ctxt_switches" in line)


def test_the_embedded_engine_reads_its_memory_statistics_once_a_second_not_twenty_times(store: Store) -> None:
    store.query("SELECT 1")  # the session store is chDB, in this process
    before = _memory_worker_wakes()
    time.sleep(3)
    # 64 in 3 s with the engine's default period (50 ms), 6 with ours.
    assert _memory_worker_wakes() - before <= 15
