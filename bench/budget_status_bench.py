"""Budget status latency: GET /api/v1/budgets/{id}/status over real HTTP, computed and cached.

Run: python bench/budget_status_bench.py [--spans 1000000] [--iterations 500] [--redis-url redis://127.0.0.1:6379/15]

Seeds a fresh chDB directory (a temporary one) with synthetic spans over 30 days for 4 tenants
(bench/seed_spans.py), their minute rollups and their hour/day compaction, then makes a monthly budget
of each scope for one tenant: tenant-wide and per model (summed from the rollups), per user (summed
from the spans). The query app is served by uvicorn on 127.0.0.1 in this process and asked over one
keep-alive HTTP connection: first with the status cache off (each call sums the spend: two queries),
then with it on (the default LLMSCOPE_BUDGET_STATUS_CACHE_SECONDS, 5 s; the process-local cache, or
Redis with --redis-url), the cache warmed by one call, and with a 0.1 s TTL, so that the status is
refreshed in the background many times during the run (callers must not wait for those refreshes).
Prints p50 and p99 of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conditions import Machine, header  # noqa: E402
from seed_spans import seed_spans  # noqa: E402

from llmscope.auth import KeyResolver, create_key  # noqa: E402
from llmscope.broker import free_port  # noqa: E402
from llmscope.http import make_server  # noqa: E402
from llmscope.settings import Settings, load_settings  # noqa: E402
from llmscope.storage import Store, open_store  # noqa: E402
from llmscope.storage.migrate import apply_migrations  # noqa: E402
from query.app import create_query_app  # noqa: E402
from schemas.budget_rows import write_budget  # noqa: E402
from schemas.budgets import Budget, BudgetCreate  # noqa: E402
from streams.compaction import compact, rebuild_minutes  # noqa: E402

TENANT = "tenant-0"
SCOPES = {"tenant": {}, "model": {"scope": "model", "scope_value": "gpt-4o"},
          "user_id": {"scope": "user_id", "scope_value": "user-42"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def seed(store: Store, spans: int, now: datetime) -> None:
    seed_spans(store, spans, 4, 30, 100, now)
    rebuild_minutes(store, now - timedelta(days=31), now + timedelta(days=1))
    compact(store, now, timedelta(hours=2))


async def measure(settings: Settings, store: Store, key: str, budgets: dict[str, str],
                  iterations: int) -> dict[str, list[float]]:
    port = free_port()
    server = make_server(create_query_app(settings, store, KeyResolver(store, 3600.0)), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    out: dict[str, list[float]] = {}
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"authorization": f"Bearer {key}"}) as client:
            for scope, budget_id in budgets.items():
                times = []
                for i in range(iterations + 1):
                    t0 = time.perf_counter()
                    r = await client.get(f"/api/v1/budgets/{budget_id}/status")
                    if i:  # the first call warms the connection (and the cache, when on)
                        times.append((time.perf_counter() - t0) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"status -> {r.status_code}: {r.text[:300]}")
                out[scope] = times
    finally:
        server.should_exit = True
        await task
    return out


async def run(args: argparse.Namespace) -> None:
    header(
        "GET /api/v1/budgets/{id}/status, budgets of 3 scopes, with the status cache off and on",
        f"uvicorn on 127.0.0.1 in this process, one keep-alive httpx connection, chDB in this process; "
        f"{args.iterations} sequential requests per budget and mode after one warm-up request; p50 and p99, "
        f"no best-of; cache: {'Redis ' + args.redis_url if args.redis_url else 'in process'}",
    )
    machine = Machine()
    with tempfile.TemporaryDirectory(prefix="budget-bench-") as data_dir:
        base = load_settings(data_dir=Path(data_dir), retention_days=32, redis_url=args.redis_url or None)
        store = open_store(base)
        try:
            apply_migrations(store, base.retention_days)
            now = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            seed(store, args.spans, now)
            print(f"seeded {args.spans:,} spans and their rollups in {time.perf_counter() - t0:.1f} s", flush=True)
            key = create_key(store, TENANT, "bench", {"read"})
            budgets = {}
            for scope, body in SCOPES.items():
                budget = Budget.create(BudgetCreate.model_validate({"name": scope, "limit_usd": Decimal(1000), **body}),
                                       now)
                write_budget(store, TENANT, budget)
                budgets[scope] = budget.id
            cold = await measure(base.model_copy(update={"budget_status_cache_seconds": 0}), store, key, budgets,
                                 args.iterations // 5)
            warm = await measure(base, store, key, budgets, args.iterations)
            churn = await measure(base.model_copy(update={"budget_status_cache_seconds": 0.1}), store, key, budgets,
                                  args.iterations)
        finally:
            store.close()

    print(f"\n{'scope':<10}{'computed p50':>14}{'p99':>9}{'cached p50':>13}{'p99':>9}{'p50 ratio':>11}"
          f"{'TTL 0.1s p50':>15}{'p99':>9}")
    for scope in SCOPES:
        c, w, r = cold[scope], warm[scope], churn[scope]
        print(f"{scope:<10}{percentile(c, 0.5):>12.2f}ms{percentile(c, 0.99):>7.2f}ms"
              f"{percentile(w, 0.5):>11.2f}ms{percentile(w, 0.99):>7.2f}ms"
              f"{percentile(c, 0.5) / percentile(w, 0.5):>10.1f}x"
              f"{percentile(r, 0.5):>13.2f}ms{percentile(r, 0.99):>7.2f}ms")
    worst = max(percentile(w, 0.99) for w in (*warm.values(), *churn.values()))
    print(f"\ncached status worst p99: {worst:.2f} ms (target < 10 ms); computed: {args.iterations // 5} "
          f"requests per budget, cached: {args.iterations} (each mode)")
    print(f"machine: {machine.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=1_000_000, help="synthetic spans over 30 days, 4 tenants")
    parser.add_argument("--iterations", type=int, default=500, help="cached requests per budget (computed: a fifth)")
    parser.add_argument("--redis-url", default="", help="use Redis for the cache (e.g. redis://127.0.0.1:6379/15)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
