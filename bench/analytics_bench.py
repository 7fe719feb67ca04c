"""Analytics API latency: each endpoint through the ASGI app, over rollups and over raw spans.

Run: python bench/seed_spans.py --data-dir DIR --spans 1000000   (once)
     python bench/analytics_bench.py --data-dir DIR [--iterations 50] [--raw-iterations 10]

Opens the seeded chDB directory in this process, builds the query app with the result cache off,
and asks every endpoint for a 24 h and a 30 d range ending now, rotating through the tenants. Then
it asks the same questions with the endpoints forced onto the raw spans table (FINAL), the path the
API takes for user/session questions, and prints p50/p95 ms per endpoint and range with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conditions import Machine, header  # noqa: E402

from llmscope.auth import KeyResolver, create_key  # noqa: E402
from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import open_store  # noqa: E402
from query import analytics  # noqa: E402
from query.app import create_query_app  # noqa: E402
from query.cache import NullCache  # noqa: E402

QUESTIONS = {
    "summary": ("/api/v1/metrics/summary", {}),
    "timeseries": ("/api/v1/metrics/timeseries", {"metric": ["requests", "cost_usd", "error_rate", "latency_p95"]}),
    "timeseries/model": ("/api/v1/metrics/timeseries", {"metric": ["requests", "latency_p95"], "group_by": "model"}),
    "breakdown": ("/api/v1/metrics/breakdown", {"dimension": "model", "metric": "cost_usd"}),
}
RANGES = {"24h": timedelta(days=1), "30d": timedelta(days=30)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(client: httpx.AsyncClient, keys: list[dict[str, str]], path: str, params: dict,
                  span: timedelta, iterations: int) -> list[float]:
    times = []
    for i in range(iterations):
        end = datetime.now(timezone.utc)
        query = {**params, "start": (end - span).isoformat(), "end": end.isoformat()}
        t0 = time.perf_counter()
        r = await client.get(path, params=query, headers=keys[i % len(keys)])
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path} -> {r.status_code}: {r.text[:300]}")
    return times


async def run(args: argparse.Namespace) -> None:
    header(
        "each analytics endpoint, 24 h and 30 d ranges, answered from rollups and then from raw spans (FINAL)",
        f"in process: the query app called through httpx's ASGI transport (no network, no server), chDB in this "
        f"process, result cache off; {args.iterations} sequential requests per endpoint and range over rollups "
        f"({args.raw_iterations} over spans) after 2 warm-up requests; p50 and p95 of those, no best-of",
    )
    machine = Machine()
    settings = load_settings(data_dir=args.data_dir, query_cache_ttl_seconds=0)
    store = open_store(settings)
    try:
        tenants = store.query(f"SELECT DISTINCT tenant_id FROM {store.database}.rollup_day ORDER BY tenant_id")
        keys = [{"authorization": f"Bearer {create_key(store, t, 'bench', {'read'})}"} for t in tenants["tenant_id"]]
        app = create_query_app(settings, store, KeyResolver(store, 3600.0))
        assert isinstance(app.state.cache, NullCache)
        results: dict[tuple[str, str, str], list[float]] = {}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for source, iterations in (("rollups", args.iterations), ("spans", args.raw_iterations)):
                if source == "spans":
                    # Same endpoints, same SQL shape, answered from spans FINAL instead of rollups.
                    analytics.Question.raw = property(lambda self: True)  # type: ignore[assignment,method-assign]
                for name, (path, params) in QUESTIONS.items():
                    for label, span in RANGES.items():
                        await measure(client, keys, path, params, span, 2)  # warm-up
                        results[(name, label, source)] = await measure(client, keys, path, params, span, iterations)
        spans = store.query(f"SELECT count() AS n FROM {store.database}.spans")["n"][0]
    finally:
        store.close()

    print(f"\n{spans:,} spans, {len(keys)} tenants; cache off; {args.iterations} iterations (raw: {args.raw_iterations})")
    print(f"{'endpoint':<18}{'range':<7}{'rollups p50':>12}{'p95':>9}{'spans p50':>12}{'p95':>9}{'p50 ratio':>11}")
    for name in QUESTIONS:
        for label in RANGES:
            r, s = results[(name, label, "rollups")], results[(name, label, "spans")]
            rp50, rp95, sp50, sp95 = (percentile(r, 0.5), percentile(r, 0.95), percentile(s, 0.5), percentile(s, 0.95))
            print(f"{name:<18}{label:<7}{rp50:>10.1f}ms{rp95:>7.1f}ms{sp50:>10.1f}ms{sp95:>7.1f}ms{sp50 / rp50:>10.1f}x")
    worst = max(percentile(results[(n, "30d", "rollups")], 0.95) for n in ("summary", "timeseries"))
    print(f"\n30-day summary/timeseries worst p95: {worst:.1f} ms (target < 100 ms); "
          f"mean of all rollup requests {statistics.mean(v for k, x in results.items() if k[2] == 'rollups' for v in x):.1f} ms")
    print(f"machine: {machine.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="directory seeded by bench/seed_spans.py")
    parser.add_argument("--iterations", type=int, default=50, help="requests per endpoint and range over rollups")
    parser.add_argument("--raw-iterations", type=int, default=10, help="requests per endpoint and range over spans")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
