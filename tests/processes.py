"""Processes the tests start, and what outlives them: a process owns its children, tests check it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from llmscope.broker import free_port
from llmscope.settings import Settings

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


def cpu_stage(pid: int) -> list[int]:
    """The CPU-stage processes below `pid` (multiprocessing's spawned children)."""
    return [p for p in descendants(pid) if "multiprocessing.spawn" in cmdline(p)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


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


class Worker:
    """`llmscope <role>` subprocesses over the settings' chDB directory, topics and group; `extra`
    adds LLMSCOPE_* variables."""

    def __init__(self, settings: Settings, log: Path, **extra: str) -> None:
        self.env = {
            **os.environ,
            "LLMSCOPE_DATA_DIR": str(settings.data_dir),
            "LLMSCOPE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "LLMSCOPE_KAFKA_IDEMPOTENCE": "false",
            "LLMSCOPE_INGEST_TOPIC": settings.ingest_topic,
            "LLMSCOPE_DEADLETTER_TOPIC": settings.deadletter_topic,
            "LLMSCOPE_EVENTS_TOPIC": settings.events_topic,
            "LLMSCOPE_WORKER_NAME": settings.worker_name,
            "LLMSCOPE_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "LLMSCOPE_KAFKA_SESSION_TIMEOUT_SECONDS": str(settings.kafka_session_timeout_seconds),
            "LLMSCOPE_SINK_BATCH_SECONDS": "0.2",
            # Its /metrics and /ready on a port of its own: test runs side by side must not collide.
            "LLMSCOPE_WORKER_HOST": "127.0.0.1",
            "LLMSCOPE_WORKER_PORT": str(free_port()),
            **{f"LLMSCOPE_{name.upper()}": value for name, value in extra.items()},
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def run(self, role: str) -> subprocess.Popen[bytes]:
        out = self.log.open("a")
        out.write(f"\n==== llmscope {role} ====\n")
        out.flush()
        # Its own session, so whatever it leaves behind can be found (and killed) by its group.
        return subprocess.Popen([sys.executable, "-m", "llmscope.cli", role], env=self.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        self.process = self.run("worker")

    def kill(self) -> list[str]:
        """kill -9 the worker alone, as an OOM killer or a crash would; returns what outlived it."""
        assert self.process is not None
        family = descendants(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return gone(family)

    def kill_group(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)
