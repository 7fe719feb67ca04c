"""Idle cost: CPU that `llmscope up` (broker and worker processes included) uses with no traffic.

Starts `up` on a fresh data directory, lets it settle, then reads the CPU time (user + system,
from /proc) of every process in its tree over a window and prints it as a percentage of one core,
per process and in total. CPU time, not wall time, so other load on the machine barely moves it.

    python bench/idle_cpu.py                  # settle 20 s, measure 60 s
    python bench/idle_cpu.py --seconds 300
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conditions import header  # noqa: E402
from ingest_bench import start_up  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """pid and all its descendants, alive now."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    return "tansu broker" if "tansu" in text else ("llmscope up" if " up " in f"{text} " else text[:60])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after start before measuring")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window")
    args = parser.parse_args()
    header("CPU time of every process of an idle `llmscope up` over the window",
           "/proc/<pid>/stat utime+stime before and after, divided by the window; no traffic is sent")
    with tempfile.TemporaryDirectory() as tmp:
        proc, *_ = start_up(Path(tmp))
        try:
            time.sleep(args.settle)
            pids = tree(proc.pid)
            before = {p: cpu_seconds(p) for p in pids}
            t0 = time.monotonic()
            time.sleep(args.seconds)
            window = time.monotonic() - t0
            total = 0.0
            for p in pids:
                used = cpu_seconds(p) - before[p]
                total += used
                print(f"  {name(p):<40} {100 * used / window:6.2f} % of one core")
            print(f"idle total: {100 * total / window:.2f} % of one core over {window:.0f} s (goal < 2 %)")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
