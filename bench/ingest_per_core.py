"""Ingest throughput per core: the `ingest` role alone (its own process, real tansu, the API key in
chDB) accepts realistic GenAI spans (≈1 KB prompts, requests of 100) from concurrent clients; spans
accepted per CPU second of the ingest process.

Run: python bench/ingest_per_core.py [--spans 100000] [--concurrency 8]

The load generator runs in this process and the broker in its own, so the ingest process's CPU
time (utime + stime from /proc) is what the ingest itself spent: accepted spans / that time is the
rate one core would sustain, whatever else the machine was doing meanwhile (shown below it)."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from conditions import Machine, header  # noqa: E402
from otlp_load import Request, run_load  # noqa: E402
from pii_pipeline_bench import requests  # noqa: E402

from llmscope.broker import EmbeddedBroker, free_port  # noqa: E402
from llmscope.roles import dev_key, migrate  # noqa: E402
from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import open_store  # noqa: E402


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_ingest(data_dir: Path, bootstrap: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ, "LLMSCOPE_DATA_DIR": str(data_dir), "LLMSCOPE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LLMSCOPE_KAFKA_IDEMPOTENCE": "false", "LLMSCOPE_INGEST_HOST": "127.0.0.1", "LLMSCOPE_INGEST_PORT": str(port),
        "LLMSCOPE_LOG_LEVEL": "WARNING", "LLMSCOPE_RATE_LIMIT_PER_KEY": "100000", "LLMSCOPE_RATE_LIMIT_PER_TENANT": "100000",
        "LLMSCOPE_RATE_LIMIT_SPANS_PER_KEY": "100000000", "LLMSCOPE_RATE_LIMIT_SPANS_PER_TENANT": "100000000",
    }  # fmt: skip
    env.pop("LLMSCOPE_REDIS_URL", None)
    log = (data_dir / "ingest.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "llmscope.cli", "ingest"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("ingest did not start:\n" + (data_dir / "ingest.log").read_text()[-2000:])
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pii-share", type=float, default=0.1)
    args = parser.parse_args()
    header(
        f"the ingest role alone accepting {args.spans:,} spans (≈1 KB prompts, requests of 100, "
        f"{args.concurrency} clients in this process) into tansu",
        "accepted spans per CPU second of the ingest process (utime + stime); wall-clock rate beside it",
    )
    bodies = requests(args.spans, args.pii_share)
    load = [Request("", 0, body) for body in bodies]
    data_dir = Path(tempfile.mkdtemp())
    broker = EmbeddedBroker.start()
    proc = None
    try:
        settings = load_settings(data_dir=data_dir)
        migrate(settings)
        store = open_store(settings)
        key = dev_key(store, data_dir)
        store.close()  # chDB: one process per data directory, and the ingest needs it for the keys
        proc, url = start_ingest(data_dir, broker.bootstrap)
        warm = asyncio.run(run_load(f"{url}/v1/traces", key, load[:50], args.concurrency))  # connections, caches
        machine = Machine()
        before = cpu_seconds(proc.pid)
        result = asyncio.run(run_load(f"{url}/v1/traces", key, load, args.concurrency))
        used = cpu_seconds(proc.pid) - before
        conditions = machine.summary()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        broker.stop()
    statuses = result["statuses"]
    accepted = statuses.get(200, 0) * 100  # type: ignore[union-attr]
    if accepted != args.spans or warm["statuses"] != {200: 50}:
        raise SystemExit(f"FAILED: answers {statuses} (warm-up {warm['statuses']})")
    seconds = float(result["seconds"])  # type: ignore[arg-type]
    latencies = sorted(result["latencies"])  # type: ignore[call-overload]
    print(f"{accepted:,} spans accepted in {seconds:.2f} s ({accepted / seconds:,.0f} spans/s wall); "
          f"request p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms")  # fmt: skip
    print(f"ingest process CPU: {used:.2f} s -> {accepted / used:,.0f} spans/s per core "
          f"({used / accepted * 1e6:.1f} µs per span)")  # fmt: skip
    print(f"machine: {conditions}")


if __name__ == "__main__":
    main()
