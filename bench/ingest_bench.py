"""Ingest benchmark: runs `llmscope up`, sends N spans (one trace per request) from a separate load
process with several clients, and reports accepted spans/s, request latency, and freshness.

Freshness is measured for every acknowledged request: the time from its ack (its 200 reaching the
client) until the query API's traces list (`GET /api/v1/traces`, `Cache-Control: no-cache`) counts
every one of its spans. It does not depend on rollups or on any metric. A request not readable
within --timeout seconds of its ack, or an acknowledged span missing from the traces list at the
end, fails the run (exit code 1). Traces start in request order, so one narrow time range lists
all the pending ones: the probe costs one query per polling round, however many are pending.

    python bench/ingest_bench.py                      # burst: as fast as ingest accepts
    python bench/ingest_bench.py --rate 6000          # paced at 6,000 spans/s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conditions import Machine, header  # noqa: E402

from llmscope.broker import free_port  # noqa: E402


class BenchmarkFailed(Exception):
    pass


def start_up(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    """`llmscope up` on free loopback ports; (process, ingest URL, query URL, dev API key)."""
    ingest_port, query_port = free_port(), free_port()
    log = data_dir / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmscope.cli", "up", "--data-dir", str(data_dir),
         "--ingest-port", str(ingest_port), "--query-port", str(query_port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "LLMSCOPE_LOG_LEVEL": "WARNING", "LLMSCOPE_INGEST_HOST": "127.0.0.1", "LLMSCOPE_QUERY_HOST": "127.0.0.1"},
    )
    deadline = time.monotonic() + 120
    while "Ctrl-C stops everything" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("llmscope up did not start:\n" + log.read_text()[-2000:])
        time.sleep(0.1)
    key = (data_dir / "dev-api-key").read_text().strip()
    return proc, f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{query_port}", key


@dataclass
class Sample:
    index: int
    trace_id: str
    start_ns: int  # the trace's start time: where the traces list finds it
    acked: float  # unix time the 200 reached the load client
    readable: float | None = None  # unix time of the answer that first counted every span: an upper bound
    not_before: float = 0.0  # unix time the last check that found it incomplete was sent: a lower bound
    first_check: float | None = None


class FreshnessProbe:
    """Asks the traces list, one narrow time range per round, for the oldest pending samples (up to
    one page, 500) and marks each whose span count is complete. One request per round however many
    are pending, one round at a time, a round at most every `interval` s: the probe's cost to `up`
    is bounded by the rate of rounds (≈30 ms of CPU each, measured on an idle 2-core machine)."""

    PAGE = 500

    def __init__(self, query_url: str, key: str, spans_per_trace: int, interval: float, timeout: float) -> None:
        self.url, self.spans, self.interval, self.timeout = query_url, spans_per_trace, interval, timeout
        self.headers = {"authorization": f"Bearer {key}", "cache-control": "no-cache"}
        self.pending: list[Sample] = []
        self.done: list[Sample] = []
        self.load_finished = asyncio.Event()
        self.rounds: list[float] = []  # seconds from one round's start to the next: the resolution
        self.gets = 0
        self.elapsed = 0.0

    async def _counts(self, http: httpx.AsyncClient, batch: list[Sample]) -> dict[str, int]:
        """span_count per trace listed in the time range holding every span of `batch`."""
        lo = min(s.start_ns for s in batch) / 1e9 - 0.001  # rounding must not cut off a root span
        hi = max(s.start_ns for s in batch) / 1e9 + self.spans / 1000 + 1  # child spans start 1 ms apart
        counts: dict[str, int] = {}
        cursor = None
        while True:
            params: dict[str, str | int] = {"start": f"{lo:.6f}", "end": f"{hi:.6f}", "limit": self.PAGE}
            if cursor:
                params["cursor"] = cursor
            self.gets += 1
            r = await http.get(f"{self.url}/api/v1/traces", params=params)
            if r.status_code != 200:
                raise BenchmarkFailed(f"GET /api/v1/traces answered {r.status_code}: {r.text[:300]}")
            body = r.json()
            counts.update((t["trace_id"], t["span_count"]) for t in body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return counts

    async def run(self) -> None:
        began = time.monotonic()
        try:
            await self._run()
        finally:
            self.elapsed = time.monotonic() - began

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=30, headers=self.headers) as http:
            while self.pending or not self.load_finished.is_set():
                started = time.monotonic()
                batch = self.pending[: self.PAGE]
                if batch:
                    checked = time.time()
                    counts = await self._counts(http, batch)
                    answered = time.time()
                    for s in batch:
                        s.first_check = s.first_check or checked
                        if counts.get(s.trace_id, 0) >= self.spans:
                            s.readable = answered
                            self.pending.remove(s)
                            self.done.append(s)
                        else:
                            s.not_before = checked
                late = [s for s in self.pending if time.time() - s.acked > self.timeout]
                if late:
                    raise BenchmarkFailed(
                        f"{len(late)} acknowledged requests not fully readable {self.timeout:g} s after their ack "
                        f"(first: request {late[0].index}, trace {late[0].trace_id})"
                    )
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
                if batch:
                    self.rounds.append(time.monotonic() - started)


def visible_spans(query_url: str, key: str) -> int:
    """Spans reachable through the traces list API, page by page."""
    total, cursor = 0, None
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}", "cache-control": "no-cache"}) as http:
        while True:
            params = {"limit": 500, "start": time.time() - 7200, **({"cursor": cursor} if cursor else {})}
            body = http.get(f"{query_url}/api/v1/traces", params=params).json()
            total += sum(t["span_count"] for t in body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return total


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid] + [int(c) for c in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def load_and_probe(args: argparse.Namespace, ingest_url: str, query_url: str, key: str) -> tuple[dict, FreshnessProbe]:
    probe = FreshnessProbe(query_url, key, args.batch, args.interval, args.timeout)
    load = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "otlp_load.py"), "--url", f"{ingest_url}/v1/traces", "--key", key,
        "--spans", str(args.spans), "--batch", str(args.batch), "--concurrency", str(args.concurrency),
        "--rate", str(args.rate), stdout=asyncio.subprocess.PIPE,
        limit=1 << 24,  # the summary line lists every request's latency: past 64 KB from ≈ 3,000 requests
    )
    prober = asyncio.create_task(probe.run())
    summary = None
    try:
        assert load.stdout is not None
        async for line in load.stdout:
            message = json.loads(line)
            if "summary" in message:
                summary = message["summary"]
            else:
                probe.pending.append(Sample(message["ack"], message["trace_id"], message["start_ns"], message["t"]))
            if prober.done():
                break  # it failed: stop reading, the error is raised below
    finally:
        if load.returncode is None and prober.done():
            load.kill()
        await load.wait()
        probe.load_finished.set()
    await prober
    if load.returncode != 0 or summary is None:
        raise BenchmarkFailed(f"the load generator failed (exit code {load.returncode})")
    return summary, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100, help="spans per request (one trace)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="pace at this many spans/s (0 = as fast as possible)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polling rounds (at least)")
    parser.add_argument("--timeout", type=float, default=60.0, help="fail if a request is not readable this long after its ack")
    args = parser.parse_args()

    mode = f"paced at {args.rate:,.0f} spans/s" if args.rate else "burst: as fast as ingest accepts"
    header(
        f"`llmscope up` (ingest, worker, query and tansu on this machine) under {args.spans:,} spans in requests of "
        f"{args.batch} (one trace each), {args.concurrency} concurrent clients, {mode}",
        "over HTTP on loopback from a separate load process; one run (no best-of). Throughput = spans in requests "
        "answered 200 / seconds from the first send to the last answer. Freshness, per request = from its 200 "
        "reaching the client to the first answer of the query API's traces list (no-cache) counting all its spans, "
        "measured for every acknowledged request by polling GET /api/v1/traces over the time range of the pending "
        "ones (one query per round); an upper bound, with the lower bound beside it",
    )
    machine = Machine()
    with tempfile.TemporaryDirectory() as tmp:
        proc, ingest_url, query_url, key = start_up(Path(tmp))
        try:
            summary, probe = asyncio.run(load_and_probe(args, ingest_url, query_url, key))
            accepted = summary["statuses"].get("200", 0) * args.batch
            deadline = time.monotonic() + args.timeout
            while (seen := visible_spans(query_url, key)) < accepted:
                if time.monotonic() > deadline:
                    raise BenchmarkFailed(f"only {seen} of {accepted} acknowledged spans listed by GET /api/v1/traces {args.timeout:g} s after the load")
                time.sleep(0.5)
            rss = rss_mb(proc.pid)
            conditions = machine.summary()
        except BenchmarkFailed as failure:
            raise SystemExit(f"FAILED: {failure}") from None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    sent = args.spans // args.batch * args.batch
    lat_ms = [x * 1000 for x in summary["latencies"]]
    fresh = sorted(s.readable - s.acked for s in probe.done if s.readable is not None)
    fresh_low = sorted(max(s.acked, s.not_before) - s.acked for s in probe.done)
    print(f"spans sent            {sent:,}")
    print(f"statuses              {summary['statuses']}")
    aim = "" if args.rate else f"   (aim >= 20000: ratio {accepted / summary['seconds'] / 20000:.2f})"
    print(f"accepted spans/s      {accepted / summary['seconds']:,.0f}{aim}")
    print(f"request latency       p50 {pct(lat_ms, 50):.1f} ms, p99 {pct(lat_ms, 99):.1f} ms ({len(lat_ms)} requests)")
    print(f"listed spans          {seen:,} of {accepted:,} acknowledged (GET /api/v1/traces, every page)")
    queued = [s for s in probe.done if s.first_check is not None and s.first_check - s.acked > 2 * args.interval + 0.5]
    print(f"freshness             p50 {pct(fresh, 50):.2f} s, p99 {pct(fresh, 99):.2f} s, max {fresh[-1]:.2f} s "
          f"after the ack (every one of the {len(fresh)} acknowledged requests; aim <= 2 s)")
    print(f"  lower bounds        p50 {pct(fresh_low, 50):.2f} s, p99 {pct(fresh_low, 99):.2f} s, max {fresh_low[-1]:.2f} s "
          "(the last check that still found the request incomplete)")
    print(f"  probe               {probe.gets} GETs, {probe.gets / probe.elapsed:.1f}/s; a polling round every "
          f"{statistics.mean(probe.rounds) * 1000:.0f} ms on average (max {max(probe.rounds) * 1000:.0f} ms); "
          f"{len(queued)} requests first checked over {2 * args.interval + 0.5:.1f} s after their ack (over 500 pending)")
    print(f"RSS of up + broker    {rss:.0f} MB")
    print(f"machine               {conditions}")


if __name__ == "__main__":
    main()
