"""`up`'s CPU-stage processes hold only what preparing a batch needs: every library they load is
resident in each of them. polars (≈25 MiB per process) and chDB (hundreds of MiB) belong to `up`
alone; the children import the CLI as their main module, which must not bring them in."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import UpProcess
from tests.processes import descendants


def cpu_stage_maps(up: UpProcess) -> list[str]:
    pids = [p for p in descendants(up.process.pid) if b"multiprocessing.spawn" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return [Path(f"/proc/{p}/maps").read_text() for p in pids]


def test_the_cpu_stage_processes_load_neither_polars_nor_chdb(up: UpProcess) -> None:
    maps = cpu_stage_maps(up)
    assert maps, "up runs its CPU stage in a process of its own"
    for m in maps:
        assert "pyarrow" in m  # what they do need (the Arrow batches), so the maps are the right ones
        assert "_polars_runtime" not in m
        assert "_chdb" not in m
