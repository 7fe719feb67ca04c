"""Analytics under load: summary and timeseries over the last 24 h from `llmscope up`'s query API
while a separate load process ingests spans into the same `up` at a steady rate.

Run: python bench/seed_spans.py --data-dir DIR --spans 1000000 --days 2   (once; DIR is then reused)
     python bench/analytics_under_load.py --data-dir DIR [--rate 5000] [--seconds 40] [--settle 120]

`up` runs on the seeded directory with the analytics cache off, so every request is answered by
the store. The load goes to the dev tenant (its spans land in the rollups being read); the questions
alternate between the dev tenant and a seeded tenant (last 24 h, about 1/days of its spans).
Requests are sequential, one every --every seconds, over HTTP on loopback; p50/p95/max per question.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from conditions import Machine, header  # noqa: E402
from ingest_bench import start_up  # noqa: E402

from llmscope.auth import create_key  # noqa: E402
from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import open_store  # noqa: E402

QUESTIONS = {
    "summary": ("/api/v1/metrics/summary", {}),
    "timeseries": ("/api/v1/metrics/timeseries", {"metric": ["requests", "cost_usd", "error_rate", "latency_p95"]}),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seeded_tenant_key(data_dir: Path) -> str:
    """A read key of the first seeded tenant (made before `up` opens the directory: one chDB process)."""
    store = open_store(load_settings(data_dir=data_dir))
    try:
        tenant = store.query(f"SELECT min(tenant_id) AS t FROM {store.database}.rollup_day WHERE tenant_id LIKE 'tenant-%'")["t"][0]
        if not tenant:
            raise SystemExit(f"{data_dir} holds no seeded tenant: run bench/seed_spans.py --data-dir {data_dir} first")
        return create_key(store, tenant, "analytics under load", {"read"})
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="directory seeded by bench/seed_spans.py")
    parser.add_argument("--rate", type=float, default=5000.0, help="spans/s ingested meanwhile")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the load runs")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between analytics requests")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait after `up` is ready before the load starts: a start on a seeded "
                             "store first warms up every series' anomaly detector from it (a minute or more)")
    args = parser.parse_args()
    header(
        f"summary and timeseries (last 24 h, analytics cache off) from `llmscope up` while it ingests "
        f"{args.rate:,.0f} spans/s for {args.seconds:.0f} s (requests of 100 spans, 8 clients, a separate process)",
        f"sequential GETs over loopback HTTP, one every {args.every} s, alternating a seeded tenant and the tenant "
        "under load; latency from send to the whole answer; the first 3 s of load are not counted",
    )
    seeded_key = seeded_tenant_key(args.data_dir)
    os.environ["LLMSCOPE_QUERY_CACHE_TTL_SECONDS"] = "0"  # start_up passes the environment on
    os.environ["LLMSCOPE_QUERY_CACHE_RECENT_TTL_SECONDS"] = "0"
    machine = Machine()
    proc, ingest_url, query_url, dev_key = start_up(args.data_dir)
    time.sleep(args.settle)
    load = None
    times: dict[tuple[str, str], list[float]] = {}
    try:
        spans = int(args.rate * args.seconds) // 100 * 100
        load = subprocess.Popen(
            [sys.executable, str(HERE / "otlp_load.py"), "--url", f"{ingest_url}/v1/traces", "--key", dev_key,
             "--spans", str(spans), "--rate", str(args.rate)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        started = time.monotonic()
        tenants = {"seeded": seeded_key, "under load": dev_key}
        with httpx.Client(base_url=query_url, timeout=30) as http:
            i = 0
            while load.poll() is None:
                time.sleep(args.every)
                name = list(QUESTIONS)[i % len(QUESTIONS)]
                who = list(tenants)[i // len(QUESTIONS) % len(tenants)]
                i += 1
                path, params = QUESTIONS[name]
                end = datetime.now(timezone.utc)
                query = {**params, "start": (end - timedelta(days=1)).isoformat(), "end": end.isoformat()}
                t0 = time.perf_counter()
                r = http.get(path, params=query, headers={"authorization": f"Bearer {tenants[who]}"})
                elapsed = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise SystemExit(f"FAILED: {path} -> {r.status_code}: {r.text[:300]}")
                if time.monotonic() - started > 3:
                    times.setdefault((name, who), []).append(elapsed)
        load_seconds = time.monotonic() - started
        if load.returncode != 0:
            raise SystemExit(f"FAILED: the load generator exited {load.returncode}: {load.stderr.read().decode()[-1000:]}")  # type: ignore[union-attr]
        conditions = machine.summary()
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)

    print(f"\nload: {spans:,} spans at {args.rate:,.0f} spans/s, sent in {load_seconds:.1f} s")
    print(f"{'question':<12}{'tenant':<12}{'n':>5}{'p50':>10}{'p95':>10}{'max':>10}")
    for (name, who), values in sorted(times.items()):
        print(f"{name:<12}{who:<12}{len(values):>5}{percentile(values, 0.5):>8.1f}ms{percentile(values, 0.95):>8.1f}ms"
              f"{max(values):>8.1f}ms")  # fmt: skip
    worst = max(percentile(v, 0.95) for v in times.values())
    print(f"worst p95 {worst:.1f} ms (aim < 100 ms); mean {statistics.mean(x for v in times.values() for x in v):.1f} ms")
    print(f"machine: {conditions}")


if __name__ == "__main__":
    main()
