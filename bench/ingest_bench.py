"""Ingest benchmark: runs `llmscope up`, sends N spans with several clients, reports spans/s,
request latency p50/p99 and end-to-end freshness (last acknowledged request → all spans queryable)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmscope.broker import free_port  # noqa: E402


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


def counted_spans(query_url: str, key: str) -> int:
    """Spans counted by the analytics API: cheap to poll (rollups are written right after spans)."""
    headers = {"authorization": f"Bearer {key}", "cache-control": "no-cache"}
    with httpx.Client(timeout=30, headers=headers) as http:
        body = http.get(f"{query_url}/api/v1/metrics/summary", params={"start": time.time() - 7200}).json()
        return int(body["data"]["requests"])


def visible_spans(query_url: str, key: str) -> int:
    """Spans reachable through the traces API, page by page: the definitive check."""
    total, cursor = 0, None
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {key}"}) as http:
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


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="pace at this many spans/s (0 = as fast as possible)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, ingest_url, query_url, key = start_up(Path(tmp))
        try:
            load = subprocess.run(
                [sys.executable, str(HERE / "otlp_load.py"), "--url", f"{ingest_url}/v1/traces", "--key", key,
                 "--spans", str(args.spans), "--batch", str(args.batch), "--concurrency", str(args.concurrency),
                 "--rate", str(args.rate)],
                capture_output=True, text=True, check=True,
            )
            result = json.loads(load.stdout)
            sent = args.spans // args.batch * args.batch
            deadline = time.time() + 120
            while counted_spans(query_url, key) < sent and time.time() < deadline:
                time.sleep(0.1)
            freshness = time.time() - result["last_ack"]
            seen = visible_spans(query_url, key)
            rss = rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    lat_ms = [x * 1000 for x in result["latencies"]]
    accepted = result["statuses"].get("200", 0) * args.batch
    pace = f", paced at {args.rate:.0f} spans/s" if args.rate else ", as fast as accepted"
    print(f"spans sent            {sent}  (batches of {args.batch}, {args.concurrency} concurrent clients{pace})")
    print(f"statuses              {result['statuses']}")
    print(f"accepted spans/s      {accepted / result['seconds']:.0f}   (aim >= 20000: ratio {accepted / result['seconds'] / 20000:.2f})")
    print(f"request latency p50   {pct(lat_ms, 50):.1f} ms")
    print(f"request latency p99   {pct(lat_ms, 99):.1f} ms")
    print(f"visible spans         {seen} of {sent}")
    print(f"freshness             {freshness:.2f} s after the last acknowledged request (aim <= 2 s)")
    print(f"RSS of up + broker    {rss:.0f} MB")


if __name__ == "__main__":
    main()
