"""Soak: `llmscope up` under a steady OTLP load for a long time (not run in CI).

Every --interval seconds it samples: RSS of the `up` process, of its CPU-stage worker processes
and of the tansu broker child, each separately; spans accepted per second; freshness (how long
until a marker trace sent at the sample time is readable through the query API); and errors.
It prints a table, a summary, and what the broker's memory costs per million spans (tansu's
memory storage keeps every message and applies no retention), then stops `up` with SIGTERM and
reports how long the drain took.

    python bench/soak.py                      # 30 minutes at 1000 spans/s
    python bench/soak.py --minutes 3 --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conditions import Machine, header  # noqa: E402
from ingest_bench import start_up  # noqa: E402
from otlp_load import build_bodies  # noqa: E402


MiB = 1024 * 1024


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_memory(up_pid: int) -> tuple[int, int, int]:
    """(up, its python worker processes, tansu) resident bytes."""
    workers = tansu = 0
    for child in children(up_pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"tansu" in cmd:
            tansu += rss(child)
        else:
            workers += rss(child) + sum(rss(g) for g in children(child))
    return rss(up_pid), workers, tansu


@dataclass
class Window:
    accepted_spans: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


@dataclass
class Sample:
    t: float
    spans_per_s: float
    p99_ms: float
    freshness_s: float | None
    up: int
    workers: int
    tansu: int
    total_spans: int
    errors: dict[str, int]


class Soak:
    def __init__(self, ingest: str, query: str, key: str, rate: float, batch: int) -> None:
        self.ingest, self.query, self.rate, self.batch = ingest, query, rate, batch
        self.auth = {"authorization": f"Bearer {key}"}
        self.window = Window()
        self.total_spans = 0
        self.stop = asyncio.Event()

    async def load(self, concurrency: int = 4) -> None:
        """`rate` spans/s in requests of `batch` spans, paced, each body fresh (unique ids)."""
        headers = {**self.auth, "content-type": "application/x-protobuf"}
        started, sent = time.perf_counter(), 0
        per_request = self.batch / self.rate

        async def client(http: httpx.AsyncClient) -> None:
            nonlocal sent
            while not self.stop.is_set():
                sent += 1
                await asyncio.sleep(max(0.0, started + sent * per_request - time.perf_counter()))
                body = build_bodies(self.batch, self.batch, seed=sent)[0]
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"{self.ingest}/v1/traces", content=body, headers=headers)
                    outcome = "ok" if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.window.latencies.append(time.perf_counter() - t0)
                if outcome == "ok":
                    self.window.accepted_spans += self.batch
                    self.total_spans += self.batch
                else:
                    self.window.errors[outcome] = self.window.errors.get(outcome, 0) + 1

        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(client(http) for _ in range(concurrency)))

    async def freshness(self, timeout: float = 60.0) -> float | None:
        """Seconds from sending one marker span until its trace is readable; None if never."""
        req = ExportTraceServiceRequest()
        trace_id = os.urandom(16)
        now = time.time_ns()
        req.resource_spans.add().scope_spans.add().spans.append(
            Span(trace_id=trace_id, span_id=os.urandom(8), name="soak-marker", start_time_unix_nano=now, end_time_unix_nano=now + 1000)
        )
        async with httpx.AsyncClient(timeout=30) as http:
            t0 = time.monotonic()
            r = await http.post(f"{self.ingest}/v1/traces", content=req.SerializeToString(),
                                headers={**self.auth, "content-type": "application/x-protobuf"})
            if r.status_code != 200:
                return None
            while time.monotonic() - t0 < timeout:
                got = await http.get(f"{self.query}/api/v1/traces/{trace_id.hex()}", headers={**self.auth, "cache-control": "no-cache"})
                if got.status_code == 200:
                    return time.monotonic() - t0
                await asyncio.sleep(0.1)
        return None


def fmt_errors(errors: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "-"


async def soak(args: argparse.Namespace, up: subprocess.Popen[bytes], ingest: str, query: str, key: str) -> list[Sample]:
    run = Soak(ingest, query, key, args.rate, args.batch)
    loader = asyncio.create_task(run.load())
    samples: list[Sample] = []
    start = time.monotonic()
    print(f"{'t s':>6} {'spans/s':>8} {'p99 ms':>7} {'fresh s':>7} {'up MiB':>7} {'pool MiB':>8} {'tansu MiB':>9} {'spans':>9}  errors",
          flush=True)
    try:
        while time.monotonic() - start < args.minutes * 60:
            probe = asyncio.create_task(run.freshness())
            await asyncio.sleep(args.interval)
            window, run.window = run.window, Window()
            fresh = await probe if probe.done() else None
            if not probe.done():
                probe.cancel()
            up_rss, pool_rss, tansu_rss = process_memory(up.pid)
            lat = sorted(window.latencies)
            s = Sample(
                t=time.monotonic() - start,
                spans_per_s=window.accepted_spans / args.interval,
                p99_ms=(lat[int(0.99 * (len(lat) - 1))] * 1000) if lat else 0.0,
                freshness_s=fresh, up=up_rss, workers=pool_rss, tansu=tansu_rss,
                total_spans=run.total_spans, errors=window.errors,
            )
            samples.append(s)
            fresh_text = f"{fresh:7.2f}" if fresh is not None else "  never"
            print(f"{s.t:6.0f} {s.spans_per_s:8.0f} {s.p99_ms:7.0f} {fresh_text} {up_rss / MiB:7.0f} {pool_rss / MiB:8.0f} "
                  f"{tansu_rss / MiB:9.0f} {s.total_spans:9d}  {fmt_errors(window.errors)}", flush=True)
            if up.poll() is not None:
                print("llmscope up exited during the soak", flush=True)
                break
    finally:
        run.stop.set()
        await loader
    return samples


def summary(samples: list[Sample], minutes: float) -> None:
    if len(samples) < 2:
        print("not enough samples")
        return
    first, last = samples[0], samples[-1]
    fresh = [s.freshness_s for s in samples if s.freshness_s is not None]
    errors: dict[str, int] = {}
    for s in samples:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v
    spans = last.total_spans - first.total_spans
    per_million = (last.tansu - first.tansu) / spans * 1e6 if spans else 0.0
    # Least-squares slope after a one-minute warm-up: single samples are noisy (chDB merges, GC).
    steady = [s for s in samples if s.t >= 60] or samples
    up_slope = _slope([(s.t / 3600, s.up) for s in steady])
    rate = statistics.mean(s.spans_per_s for s in samples[1:])
    print("\nsummary")
    print(f"  accepted: {last.total_spans} spans, {rate:.0f} spans/s on average; errors: {fmt_errors(errors)}")
    if fresh:
        print(f"  freshness: p50 {statistics.median(fresh):.2f} s, max {max(fresh):.2f} s, "
              f"{len(samples) - len(fresh)} of {len(samples)} markers not readable within the sample interval")
    print(f"  up RSS: {first.up / MiB:.0f} -> {last.up / MiB:.0f} MiB (trend after the first minute {up_slope / MiB:+.0f} MiB/h); "
          f"worker pool: {first.workers / MiB:.0f} -> {last.workers / MiB:.0f} MiB")
    print(f"  tansu RSS: {first.tansu / MiB:.0f} -> {last.tansu / MiB:.0f} MiB: {per_million / MiB:.0f} MiB per million spans "
          f"({per_million / 1e6:.0f} bytes/span)")
    print(f"  at {rate:.0f} spans/s the broker grows {rate * 3600 * per_million / 1e6 / MiB / 1024:.2f} GiB/hour, "
          f"{rate * 86400 * per_million / 1e6 / MiB / 1024:.1f} GiB/day: `up` is for development loads, or restart it "
          "(graceful stop drains) to give the broker's memory back")


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    mx = statistics.mean(x for x, _ in points)
    my = statistics.mean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="spans per second")
    parser.add_argument("--batch", type=int, default=100, help="spans per request")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    header(
        f"`llmscope up` (ingest, worker, query and tansu on this machine) under {args.rate:,.0f} spans/s for "
        f"{args.minutes:g} min, sampled every {args.interval:g} s",
        "over HTTP on loopback, load from this process (4 clients, paced); per sample: spans accepted in the window "
        "/ its length, p99 of the window's request latencies, RSS from /proc, and the freshness of one marker trace "
        "(from just before its POST until GET /api/v1/traces/{id} answers 200, polled every 0.1 s: it includes the "
        "ingest request; a marker not readable within the sample interval counts as never)",
    )
    machine = Machine()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="llmscope-soak-"))
    up, ingest, query, key = start_up(data_dir)
    print(f"llmscope up (pid {up.pid}) in {data_dir}: {args.rate:.0f} spans/s in requests of {args.batch}, "
          f"{args.minutes:g} min, a sample every {args.interval:g} s", flush=True)
    try:
        samples = asyncio.run(soak(args, up, ingest, query, key))
    finally:
        t0 = time.monotonic()
        up.send_signal(signal.SIGTERM)
        try:
            code = up.wait(120)
        except subprocess.TimeoutExpired:
            up.kill()
            code = up.wait()
        print(f"graceful stop (drain included) took {time.monotonic() - t0:.1f} s, exit code {code}")
    summary(samples, args.minutes)
    print(f"machine: {machine.summary()}")


if __name__ == "__main__":
    main()
