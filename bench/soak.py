"""Soak: `llmscope up` under a steady OTLP load for a long time (not run in CI).

Every --interval seconds it samples: RSS of the `up` process, of its CPU-stage worker processes
and of its tansu broker(s) (two while `up` replaces its broker), each separately and in total,
and the PSS of them all (shared pages counted once: the RSS sum counts chDB's library twice);
spans accepted per second; freshness (how long until a marker trace sent at the sample time is
readable through the query API); and errors. Each sample is printed and appended to --samples
as it is taken (flushed, so a long run can be read while it goes). At the end: a summary with
each process's RSS after the warm-up, its trend (least squares, MiB/h), an extrapolation of the
total to 24 h, how often the broker was replaced and what it costs per million spans between
replacements; then `up` is stopped with SIGTERM and the drain timed.

    python bench/soak.py                      # 30 minutes at 1000 spans/s
    python bench/soak.py --minutes 3 --rate 2000
    python bench/soak.py --hours 2 --samples soak.samples
    LLMSCOPE_BROKER_ROTATE_MIB=32 python bench/soak.py --minutes 45 --rate 3000   # rotations sooner
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from conditions import Machine, header  # noqa: E402
from ingest_bench import start_up  # noqa: E402
from otlp_load import build_bodies  # noqa: E402


MiB = 1024 * 1024


def rss(pid: int, field: str = "VmRSS") -> int:
    """Resident bytes; `field="RssAnon"` for the anonymous part alone (heaps, stacks), which tells
    the allocators' growth apart from more of a library's pages being read in."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def pss(pid: int) -> int:
    """Proportional set size: each page shared by n processes counts 1/n (chDB's library and the
    CPU-stage children's copy-on-write pages are shared with `up`: an RSS sum counts them twice)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def family_pss(pid: int) -> int:
    return pss(pid) + sum(family_pss(c) for c in children(pid))


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_memory(up_pid: int) -> tuple[int, int, int, frozenset[int]]:
    """(up, its python worker processes, tansu) resident bytes, and the pids of the brokers."""
    workers = tansu = 0
    brokers = set()
    for child in children(up_pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"tansu" in cmd:
            tansu += rss(child)
            brokers.add(child)
        else:
            workers += rss(child) + sum(rss(g) for g in children(child))
    return rss(up_pid), workers, tansu, frozenset(brokers)


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
    brokers: frozenset[int] = frozenset()
    pss: int = 0  # all of `up`'s processes, shared pages counted once
    up_anon: int = 0  # the anonymous part of `up`'s RSS

    @property
    def total(self) -> int:
        return self.up + self.workers + self.tansu


COLUMNS = (f"{'t s':>7} {'spans/s':>8} {'p99 ms':>7} {'fresh s':>7} {'up MiB':>7} {'pool MiB':>8} {'tansu MiB':>9} "
           f"{'total MiB':>9} {'PSS MiB':>7} {'up anon':>7} {'brokers':>7} {'spans':>10}  errors")


def row(s: Sample, rotations: int) -> str:
    fresh = f"{s.freshness_s:7.2f}" if s.freshness_s is not None else "  never"
    return (f"{s.t:7.0f} {s.spans_per_s:8.0f} {s.p99_ms:7.0f} {fresh} {s.up / MiB:7.0f} {s.workers / MiB:8.0f} "
            f"{s.tansu / MiB:9.0f} {s.total / MiB:9.0f} {s.pss / MiB:7.0f} {s.up_anon / MiB:7.0f} {f'{len(s.brokers)}/{rotations}':>7} {s.total_spans:10d}  "
            f"{fmt_errors(s.errors)}")


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


async def soak(args: argparse.Namespace, up: subprocess.Popen[bytes], ingest: str, query: str, key: str) -> list[Sample]:
    run = Soak(ingest, query, key, args.rate, args.batch)
    loader = asyncio.create_task(run.load())
    samples: list[Sample] = []
    seen: set[int] = set()  # every broker pid so far: a new one is a rotation
    start = time.monotonic()
    out = args.samples.open("a") if args.samples else None
    # brokers: how many run now / how many times `up` replaced its broker so far.
    emit(out, COLUMNS)
    try:
        while time.monotonic() - start < args.seconds:
            probe = asyncio.create_task(run.freshness())
            await asyncio.sleep(args.interval)
            window, run.window = run.window, Window()
            fresh = await probe if probe.done() else None
            if not probe.done():
                probe.cancel()
            up_rss, pool_rss, tansu_rss, brokers = process_memory(up.pid)
            seen |= brokers
            lat = sorted(window.latencies)
            s = Sample(
                t=time.monotonic() - start,
                spans_per_s=window.accepted_spans / args.interval,
                p99_ms=(lat[int(0.99 * (len(lat) - 1))] * 1000) if lat else 0.0,
                freshness_s=fresh, up=up_rss, workers=pool_rss, tansu=tansu_rss,
                total_spans=run.total_spans, errors=window.errors, brokers=brokers, pss=family_pss(up.pid),
                up_anon=rss(up.pid, "RssAnon"),
            )
            samples.append(s)
            emit(out, row(s, len(seen) - 1))
            if up.poll() is not None:
                emit(out, "llmscope up exited during the soak")
                break
    finally:
        run.stop.set()
        await loader
        if out:
            out.close()
    return samples


def emit(out: TextIO | None, line: str) -> None:
    """To the terminal and to the samples file, each line flushed as it is made."""
    print(line, flush=True)
    if out:
        out.write(line + "\n")
        out.flush()


def fmt_errors(errors: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(errors.items())) or "-"


def summary(samples: list[Sample], warmup_s: float) -> list[str]:
    if len(samples) < 2:
        return ["not enough samples"]
    first, last = samples[0], samples[-1]
    fresh = [s.freshness_s for s in samples if s.freshness_s is not None]
    errors: dict[str, int] = {}
    for s in samples:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v
    rate = statistics.mean(s.spans_per_s for s in samples[1:])
    lines = ["", "summary",
             f"  accepted: {last.total_spans} spans, {rate:.0f} spans/s on average; errors: {fmt_errors(errors)}"]
    if fresh:
        lines.append(f"  freshness: p50 {statistics.median(fresh):.2f} s, p99 {_quantile(fresh, 0.99):.2f} s, "
                     f"max {max(fresh):.2f} s, {len(samples) - len(fresh)} of {len(samples)} markers not readable "
                     "within the sample interval")
    # Least squares after the warm-up: single samples are noisy (chDB merges, GC, broker rotations).
    steady = [s for s in samples if s.t >= warmup_s]
    if len(steady) < 2:
        steady = samples[len(samples) // 2:]
    hours = (steady[-1].t - steady[0].t) / 3600
    lines.append(f"  RSS after a warm-up of {steady[0].t / 60:.1f} min, over {hours * 60:.1f} min: "
                 "first -> last (min..max), trend")
    for name, get in (("up", lambda s: s.up), ("up anonymous", lambda s: s.up_anon), ("worker pool", lambda s: s.workers),
                      ("tansu", lambda s: s.tansu), ("total", lambda s: s.total), ("PSS total", lambda s: s.pss)):
        values = [get(s) for s in steady]
        slope = _slope([(s.t / 3600, get(s)) for s in steady])
        lines.append(f"    {name:<12} {get(first) / MiB:6.0f} -> {get(last) / MiB:6.0f} MiB "
                     f"({min(values) / MiB:.0f}..{max(values) / MiB:.0f}), {slope / MiB:+.1f} MiB/h")
    lines += _extrapolation(steady, "total", lambda s: s.total)
    lines += _extrapolation(steady, "PSS total", lambda s: s.pss)
    lines += _broker(samples, rate)
    return lines


def _extrapolation(steady: list[Sample], name: str, get: Callable[[Sample], int]) -> list[str]:
    """The total at 24 h if the trend after the warm-up went on: from the mean of the last tenth of
    the samples and from the highest sample (a broker about to be replaced), both plus the slope."""
    last_tenth = steady[-max(1, len(steady) // 10):]
    slope = _slope([(s.t / 3600, get(s)) for s in steady])
    now_h = steady[-1].t / 3600
    mean_now = statistics.mean(get(s) for s in last_tenth)
    peak = max(get(s) for s in steady)
    at_24 = mean_now + slope * max(0.0, 24 - now_h)
    peak_24 = peak + max(0.0, slope) * max(0.0, 24 - now_h)
    span = (steady[-1].t - steady[0].t) / 3600
    caveat = ("a trend over less than an hour says little about a day" if span < 1
              else f"a straight line from {span:.1f} h of data")
    return [f"  extrapolated {name} at 24 h: {at_24 / MiB:.0f} MiB typical, {peak_24 / MiB:.0f} MiB at a peak "
            f"(now {mean_now / MiB:.0f} MiB, peak so far {peak / MiB:.0f} MiB, trend {slope / MiB:+.1f} MiB/h; {caveat})"]


def _broker(samples: list[Sample], rate: float) -> list[str]:
    """Rotations, and the broker's growth per million spans between them."""
    seen: set[int] = set()
    for s in samples:
        seen |= s.brokers
    grown = spans = 0.0
    for a, b in zip(samples, samples[1:]):
        if a.brokers == b.brokers and len(a.brokers) == 1:  # the same single broker: its growth is the spans'
            grown += b.tansu - a.tansu
            spans += b.total_spans - a.total_spans
    per_million = grown / spans * 1e6 if spans else 0.0
    lines = [f"  broker: replaced {max(0, len(seen) - 1)} time(s); between replacements it grows "
             f"{per_million / MiB:.0f} MiB per million spans ({per_million / 1e6:.0f} bytes/span), "
             f"{rate * 3600 * per_million / 1e6 / MiB:.0f} MiB/h at {rate:.0f} spans/s"]
    if len(seen) <= 1:
        lines.append(f"  without a replacement it would hold {rate * 86400 * per_million / 1e6 / MiB / 1024:.1f} GiB after a day")
    return lines


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    mx = statistics.mean(x for x, _ in points)
    my = statistics.mean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="how long (default 30)")
    length.add_argument("--hours", type=float, default=None, help="how long, in hours")
    parser.add_argument("--rate", type=float, default=1000.0, help="spans per second")
    parser.add_argument("--batch", type=int, default=100, help="spans per request")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=10.0, help="left out of the trends")
    parser.add_argument("--samples", type=Path, default=None, help="append every sample line (and the summary) here")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    args.seconds = args.hours * 3600 if args.hours is not None else (args.minutes or 30.0) * 60
    length_text = f"{args.seconds / 3600:g} h" if args.hours is not None else f"{args.seconds / 60:g} min"
    header(
        f"`llmscope up` (ingest, worker, query and tansu on this machine) under {args.rate:,.0f} spans/s for "
        f"{length_text}, sampled every {args.interval:g} s",
        "over HTTP on loopback, load from this process (4 clients, paced); per sample: spans accepted in the window "
        "/ its length, p99 of the window's request latencies, RSS from /proc, and the freshness of one marker trace "
        "(from just before its POST until GET /api/v1/traces/{id} answers 200, polled every 0.1 s: it includes the "
        "ingest request; a marker not readable within the sample interval counts as never)",
    )
    machine = Machine()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="llmscope-soak-"))
    up, ingest, query, key = start_up(data_dir)
    rotation = {k: v for k, v in os.environ.items() if k.startswith("LLMSCOPE_BROKER_ROTATE")}
    print(f"llmscope up (pid {up.pid}) in {data_dir}: {args.rate:.0f} spans/s in requests of {args.batch}, "
          f"{length_text}, a sample every {args.interval:g} s; broker rotation: {rotation or 'defaults'}", flush=True)
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
        stopped = f"graceful stop (drain included) took {time.monotonic() - t0:.1f} s, exit code {code}"
    out = args.samples.open("a") if args.samples else None
    for line in [stopped, *summary(samples, args.warmup_minutes * 60), f"machine: {machine.summary()}"]:
        emit(out, line)
    if out:
        out.close()


if __name__ == "__main__":
    main()
