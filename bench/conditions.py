"""What every benchmark prints beside its numbers: what it timed, how, and what else the machine
was doing meanwhile. Our machines have 2 cores shared with other work, so a wall-clock figure
means little without the CPU other processes took while it was measured."""

from __future__ import annotations

import os
from pathlib import Path


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def _tree_jiffies(root: int) -> int:
    """CPU jiffies of `root` and its live descendants, including children they have reaped."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid = int(entry.name)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += sum(int(x) for x in stats[pid][11:15])  # utime stime cutime cstime
        todo.extend(children.get(pid, []))
    return total


class Machine:
    """CPU use of the whole machine between start and `summary()`, split into this benchmark's
    process tree (its subprocesses, e.g. `llmscope up` and its broker, included) and the rest."""

    def __init__(self) -> None:
        self.cores = os.cpu_count() or 1
        self._start = self._sample()

    def _sample(self) -> tuple[int, int, int] | None:
        try:
            busy, total = _machine_jiffies()
            return busy, total, _tree_jiffies(os.getpid())
        except (OSError, ValueError, IndexError):  # not Linux: say so rather than guess
            return None

    def summary(self) -> str:
        end = self._sample()
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        if self._start is None or end is None:
            return f"{self.cores} cores, load average {load} (1/5/15 min); CPU split unavailable on this OS"
        busy, total, ours = (b - a for a, b in zip(self._start, end))
        if total <= 0:
            return f"{self.cores} cores, load average {load}"
        others = max(0, busy - ours)
        return (
            f"{self.cores} cores; while measuring, the machine was {busy / total:.0%} busy: this benchmark "
            f"{ours / total:.0%}, other processes {others / total:.0%} (of all cores); load average {load} (1/5/15 min)"
        )


def header(timed: str, method: str) -> None:
    """Print what is timed and how, before the numbers."""
    print(f"timed:   {timed}")
    print(f"method:  {method}")
