"""`up`'s CPU-stage processes: what they hold and how the system schedules them.

They hold only what preparing a batch needs, since every library they load is resident in each of
them: polars (≈25 MiB per process) and chDB (hundreds of MiB) belong to `up` alone; the children
import the CLI as their main module, which must not bring them in. And they run at a lower priority
than `up` (LLMSCOPE_WORKER_NICENESS), so a busy machine answers exports and queries first."""

from __future__ import annotations

from pathlib import Path

from llmscope.settings import Settings
from tests.conftest import UpProcess
from tests.processes import cpu_stage


def cpu_stage_of(up: UpProcess) -> list[int]:
    pids = cpu_stage(up.process.pid)
    assert pids, "up runs its CPU stage in a process of its own"
    return pids


def niceness(pid: int) -> int:
    # /proc/PID/stat: the command may hold spaces, so count the fields after its closing parenthesis.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_cpu_stage_processes_load_neither_polars_nor_chdb(up: UpProcess) -> None:
    for pid in cpu_stage_of(up):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "pyarrow" in maps  # what they do need (the Arrow batches), so the maps are the right ones
        assert "_polars_runtime" not in maps
        assert "_chdb" not in maps


def test_the_cpu_stage_processes_yield_the_cores_to_up(up: UpProcess) -> None:
    default = Settings.model_fields["worker_niceness"].default
    assert default > 0
    assert niceness(up.process.pid) == 0
    pids = cpu_stage_of(up)
    assert [niceness(pid) for pid in pids] == [default] * len(pids)
