"""Processes the tests start, and what outlives them: a process owns its children, tests check it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

# Every process a test session starts inherits this variable (subprocesses copy the environment),
# so what outlives the session can be found even once it has been re-parented to init.
SESSION_MARK = "LLMSCOPE_TEST_SESSION"


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, however deep (the broker, the CPU-stage pool, its helpers)."""
    children: dict[int, list[int]] = {}
    for line in subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def alive(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if "zombie" not in status.lower():
            out.append(f"{pid} {cmd}")
    return out


def gone(pids: list[int], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def mark_session() -> str:
    os.environ[SESSION_MARK] = uuid.uuid4().hex
    return os.environ[SESSION_MARK]


def marked(mark: str) -> list[int]:
    """Live processes carrying the session's mark in their environment: not this one, and not the
    multiprocessing resource tracker this process owns (in-process workers start one, and it lives
    exactly as long as this process)."""
    needle = f"{SESSION_MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if "zombie" in status.lower() or (parent == os.getpid() and b"multiprocessing.resource_tracker" in cmdline):
            continue
        found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
