"""Console render benchmark: the overview of a 30-day range over a seeded store, in Chromium.

  python bench/seed_spans.py --data-dir /tmp/llmscope-bench            # 10M spans, 20 tenants, 30 days (once)
  python bench/console_bench.py --data-dir /tmp/llmscope-bench [--range 30d] [--iterations 5]

Runs `llmscope query` on the seeded directory (analytics cache off), signs in as one tenant
(≈ 500k spans at the default seed) and loads the overview --iterations times. Reports, per load,
the time the API took (first request sent → last response received, from the browser's resource
timings) and the render time the page records itself: the performance measure "overview:render",
from every API answer parsed to every chart drawn (two animation frames after the DOM is built).
Render time depends on the JSON (≤ 300 points per series), not on how the store computed it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmscope.broker import free_port  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip

API_TIME_JS = """() => {
  const r = performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/metrics/'));
  const last = r.slice(-5);
  return Math.max(...last.map(e => e.responseEnd)) - Math.min(...last.map(e => e.startTime));
}"""


async def measure(url: str, key: str, range_: str, iterations: int, chromium: str, shot: Path | None) -> list[dict[str, float]]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1440, "height": 1000})
        await page.goto(f"{url}/")
        await page.fill("#signin-key", key)
        await page.click("#signin-form button[type=submit]")
        await page.wait_for_selector("#page[data-render-ms]", timeout=120_000)
        runs = []
        for i in range(iterations):
            await page.evaluate("() => { performance.clearResourceTimings(); delete document.getElementById('page').dataset.renderMs; }")
            await page.select_option("#range", "1h" if range_ != "1h" else "24h")
            await page.wait_for_selector("#page[data-render-ms]", timeout=120_000)
            await page.evaluate("() => { performance.clearResourceTimings(); delete document.getElementById('page').dataset.renderMs; }")
            await page.select_option("#range", range_)
            await page.wait_for_selector("#page[data-render-ms]", timeout=120_000)
            render = float(await page.get_attribute("#page", "data-render-ms") or "nan")
            points = await page.evaluate("() => [...document.querySelectorAll('.chart')].reduce((n, c) => n + (c.__chart ? c.__chart.data.slice(1).reduce((a, s) => a + s.length, 0) : 0), 0)")
            runs.append({"api_ms": round(await page.evaluate(API_TIME_JS), 1), "render_ms": render, "points_drawn": points})
            print(json.dumps({"load": i + 1, **runs[-1]}), flush=True)
        if shot:
            await page.screenshot(path=str(shot), full_page=True)
        await browser.close()
        return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="directory seeded by bench/seed_spans.py")
    parser.add_argument("--tenant", default="tenant-0")
    parser.add_argument("--range", default="30d", choices=["1h", "24h", "7d", "30d"])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    env = {**os.environ, "LLMSCOPE_DATA_DIR": str(args.data_dir), "LLMSCOPE_LOG_LEVEL": "WARNING"}
    key = subprocess.run([sys.executable, "-m", "llmscope.cli", "create-key", "--tenant", args.tenant, "--scopes", "read"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "llmscope.cli", "query"],
                              env={**env, "LLMSCOPE_QUERY_PORT": str(port), "LLMSCOPE_QUERY_HOST": "127.0.0.1",
                                   "LLMSCOPE_QUERY_CACHE_TTL_SECONDS": "0"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        spans = httpx.get(f"{url}/api/v1/metrics/summary", params={"start": time.time() - 31 * 86400},
                          headers={"authorization": f"Bearer {key}"}, timeout=120).json()["data"]["requests"]
        runs = asyncio.run(measure(url, key, args.range, args.iterations, args.chromium, args.screenshot))
        render = [r["render_ms"] for r in runs]
        api = [r["api_ms"] for r in runs]
        print(json.dumps({
            "tenant_spans_in_range": spans, "range": args.range, "loads": len(runs),
            "api_ms": {"median": statistics.median(api), "max": max(api)},
            "render_ms_after_api": {"median": statistics.median(render), "max": max(render)},
        }, indent=2))
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
