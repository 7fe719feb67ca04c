"""The web console in Chromium, after spans went through OTLP ingest into `llmscope up`: what it
shows equals what the API answers, for the signed-in tenant only."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
from playwright.async_api import Page

from tests.conftest import wait_for
from tests.console.conftest import TIMEZONE, Console, screenshot, send, sign_in
from tests.otlp_factory import llm_span


def _api(console: Console, key: str, path: str, **params: object) -> dict:
    headers = {"authorization": f"Bearer {key}", "cache-control": "no-cache"}
    r = httpx.get(f"{console.url}/api/v1{path}", params=params, headers=headers, timeout=10)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def _cards(page: Page) -> dict[str, str]:
    await page.wait_for_selector("#page[data-render-ms]")
    return await page.eval_on_selector_all(".card", "cs => Object.fromEntries(cs.map(c => [c.dataset.metric, c.dataset.value]))")


async def until(page: Page, js: str, timeout: float = 5.0) -> None:
    """Poll a JavaScript predicate (Playwright's wait_for_function evaluates strings, which the
    console's Content-Security-Policy forbids, rightly)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(js):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {js}")
        await asyncio.sleep(0.05)


def rows_js(condition: str) -> str:
    return f"() => (n => {condition})(document.querySelectorAll('#traces-table tbody tr[data-trace-id]').length)"


async def _text(page: Page) -> str:
    return await page.inner_text("#page")


async def test_overview_numbers_equal_the_analytics_api(page: Page, console: Console) -> None:
    await sign_in(page, console, console.a.key)
    cards = await _cards(page)
    s = _api(console, console.a.key, "/metrics/summary")
    assert int(cards["requests"]) == s["requests"] == console.a.spans
    assert float(cards["error_rate"]) == pytest.approx(s["error_rate"])
    assert float(cards["cost_usd"]) == pytest.approx(s["cost_usd"])
    assert int(cards["tokens"]) == s["input_tokens"] + s["output_tokens"]
    assert float(cards["latency_p95_ms"]) == pytest.approx(s["latency_p95_ms"])
    by_model = _api(console, console.a.key, "/metrics/breakdown", dimension="model", limit=10)["items"]
    rows = await page.eval_on_selector_all(
        "table[data-breakdown=model] tbody tr", "rs => rs.map(r => [r.cells[0].innerText, r.cells[1].innerText])")
    assert rows == [[i["key"] or "(none)", f"{i['requests']:,}"] for i in by_model]
    assert await page.locator(".chart canvas").count() == 6
    assert await page.inner_text("#timezone") == f"Times in {TIMEZONE}"
    render_ms = float(await page.get_attribute("#page", "data-render-ms") or "nan")
    assert render_ms < 1000, f"overview took {render_ms} ms from API answers to charts drawn"
    await screenshot(page, "overview")


async def test_trace_view_shows_the_span_tree_in_parent_child_order(page: Page, console: Console) -> None:
    await sign_in(page, console, console.a.key)
    await page.goto(f"{console.url}/#/trace/{console.tree_trace}")
    await page.wait_for_selector(".wf-row")
    rows = await page.eval_on_selector_all(".wf-row", "rs => rs.map(r => [r.querySelector('.wf-name .strong').innerText, +r.dataset.depth])")
    assert [tuple(r) for r in rows] == console.tree_order
    # The first LLM span is selected: provider, model, tokens by class, cost and price source, PII, redacted text.
    details = await page.inner_text("#span-details")
    for expected in ("chat gpt-4o", "openai", "gpt-4o", "1,200", "300", "genai-prices", "email × 1", "alice-a"):
        assert expected in details, expected
    assert await page.inner_text("[data-content=input]") == "Summarise the ticket from [EMAIL]"
    assert "alice@example.com" not in await _text(page)
    await page.click(".wf-row:has-text('chat claude')")
    details = await page.inner_text("#span-details")
    assert "anthropic" in details and "claude-3-5-sonnet" in details and "error" in details
    await page.click(".wf-row:has-text('chat gpt-4o')")
    await screenshot(page, "trace")


async def test_filters_narrow_the_traces_table_and_pages_follow_the_cursor(page: Page, console: Console) -> None:
    await sign_in(page, console, console.a.key)
    await page.goto(f"{console.url}/#/traces")
    rows = page.locator("#traces-table tbody tr[data-trace-id]")
    await rows.first.wait_for()
    assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.traceId)")) == set(console.a.traces)
    await screenshot(page, "traces")

    await page.fill("#trace-filters input[name=model]", "claude-3-5-sonnet")
    await page.click("#trace-filters button[type=submit]")
    await until(page, rows_js(f"n > 0 && n < {len(console.a.traces)}"))
    shown = set(await rows.evaluate_all("rs => rs.map(r => r.dataset.traceId)"))
    expected = {t["trace_id"] for t in _api(console, console.a.key, "/traces", model="claude-3-5-sonnet")}
    assert shown == expected and console.tree_trace in shown and 0 < len(shown) < len(console.a.traces)

    await page.goto(f"{console.url}/#/traces?service=batch-a&status=error")
    await until(page, rows_js("n === 1"))

    await page.goto(f"{console.url}/#/traces?limit=4")
    await until(page, rows_js("n === 4"))
    first_page = await rows.evaluate_all("rs => rs.map(r => r.dataset.traceId)")
    seen = list(first_page)
    while await page.is_enabled("#next-page"):
        await page.click("#next-page")
        await until(page, f"() => !document.querySelector('tr[data-trace-id=\"{seen[-1]}\"]') "
                          "&& !!document.querySelector('#traces-table tbody tr[data-trace-id]')")
        seen += await rows.evaluate_all("rs => rs.map(r => r.dataset.traceId)")
    assert sorted(seen) == sorted(console.a.traces) and len(seen) == len(set(seen))
    await page.click("#prev-page")

    await page.fill("#trace-search input", console.tree_trace.upper())
    await page.click("#trace-search button")
    await page.wait_for_selector(".wf-row")


async def test_live_tail_shows_a_new_span_within_2s_of_its_ack(page: Page, console: Console) -> None:
    await sign_in(page, console, console.a.key)
    # Warm up: the first batch after start-up may wait for the worker; measure a steady one.
    await page.goto(f"{console.url}/#/live")
    await page.wait_for_selector("#live-status.conn-open")
    warm = llm_span(name="warm-up")
    send(console, console.a.key, [warm], "live-svc")
    await page.wait_for_selector(f"tr[data-span-id='{warm.span_id.hex()}']", timeout=30_000)

    delays = []
    for _ in range(3):
        span = llm_span(name="live-check", extra={"user.id": "erin-a"})
        acked = await asyncio.to_thread(send, console, console.a.key, [span], "live-svc")
        await page.wait_for_selector(f"tr[data-span-id='{span.span_id.hex()}']", timeout=5_000)
        delays.append(time.monotonic() - acked)
    assert max(delays) < 2.0, f"ack → row on the page took {delays} s"
    console.a.spans += 4
    console.a.traces += [warm.trace_id.hex()]

    # Filters apply in the server: only live-svc spans of gpt-4o-mini now.
    await page.fill("#live-filters input[name=model]", "gpt-4o-mini")
    await page.click("#live-filters button[type=submit]")
    await asyncio.sleep(0.3)
    skipped, wanted = llm_span(name="filtered-out", model="gpt-4o"), llm_span(name="filtered-in", model="gpt-4o-mini")
    await asyncio.to_thread(send, console, console.a.key, [skipped, wanted], "live-svc")
    await page.wait_for_selector(f"tr[data-span-id='{wanted.span_id.hex()}']", timeout=5_000)
    assert await page.locator(f"tr[data-span-id='{skipped.span_id.hex()}']").count() == 0

    # Pause holds new spans back and counts them; resume shows them.
    await page.click("#live-pause")
    held = llm_span(name="held", model="gpt-4o-mini")
    await asyncio.to_thread(send, console, console.a.key, [held], "live-svc")
    await until(page, "() => document.querySelector('#live-held').innerText.startsWith('1 new')")
    assert await page.locator(f"tr[data-span-id='{held.span_id.hex()}']").count() == 0
    await screenshot(page, "live-paused")
    await page.click("#live-pause")
    await page.wait_for_selector(f"tr[data-span-id='{held.span_id.hex()}']", timeout=2_000)
    console.a.spans += 3
    console.a.traces += [s.trace_id.hex() for s in (skipped, wanted, held)]
    await screenshot(page, "live")


async def test_a_bad_key_shows_the_sign_in_error(page: Page, console: Console) -> None:
    await page.goto(f"{console.url}/")
    await page.fill("#signin-key", "lls_" + "x" * 40)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#signin-error:not([hidden])")
    assert "not valid or has been revoked" in await page.inner_text("#signin-error")
    assert await page.is_hidden("#app")
    await screenshot(page, "signin-error")

    await page.fill("#signin-key", console.b_ingest_only)
    await page.click("#signin-form button[type=submit]")
    await until(page, "() => document.querySelector('#signin-error').innerText.includes(\"'read' scope\")")

    # A good key: kept in this tab's session storage, never in the URL.
    await sign_in(page, console, console.a.key)
    assert console.a.key not in page.url
    assert await page.evaluate("sessionStorage.getItem('llmscope.apiKey')") == console.a.key
    await page.click("#signout")
    assert await page.evaluate("sessionStorage.getItem('llmscope.apiKey')") is None


A_MARKERS = ("support-bot-a", "batch-a", "alice-a", "dave-a", "a-secret-model", "triage-a")


async def test_a_second_tenant_sees_none_of_the_first_tenants_data(page: Page, console: Console) -> None:
    await sign_in(page, console, console.b.key)
    cards = await _cards(page)
    assert int(cards["requests"]) == console.b.spans
    pages = {"overview": "", "traces": "tr[data-trace-id]", "cost": "table[data-breakdown=user]", "prices": "#unknown-models"}
    for name, ready in pages.items():
        await page.goto(f"{console.url}/#/{name}")
        await page.wait_for_selector(ready or "#page[data-render-ms]")
        text = await _text(page)
        assert not [m for m in A_MARKERS if m in text], f"tenant a's data on tenant b's {name} page"
        if name == "traces":
            shown = await page.locator("#traces-table tbody tr[data-trace-id]").evaluate_all("rs => rs.map(r => r.dataset.traceId)")
            assert set(shown) == set(console.b.traces)
        await screenshot(page, f"tenant-b-{name}")

    await page.goto(f"{console.url}/#/trace/{console.tree_trace}")
    await page.wait_for_selector(".error-box")
    assert "not found" in await _text(page)

    await page.goto(f"{console.url}/#/live")
    await page.wait_for_selector("#live-status.conn-open")
    theirs, ours = llm_span(name="a-live"), llm_span(name="b-live")
    await asyncio.to_thread(send, console, console.a.key, [theirs], "support-bot-a")
    await asyncio.to_thread(send, console, console.b.key, [ours], "tenant-b-svc")
    await page.wait_for_selector(f"tr[data-span-id='{ours.span_id.hex()}']", timeout=10_000)
    await asyncio.sleep(1.0)
    assert await page.locator(f"tr[data-span-id='{theirs.span_id.hex()}']").count() == 0
    console.a.spans += 1
    console.b.spans += 1
    console.a.traces.append(theirs.trace_id.hex())
    console.b.traces.append(ours.trace_id.hex())


async def test_cost_and_prices_pages_show_the_tenants_spend_and_unpriced_models(page: Page, console: Console) -> None:
    await sign_in(page, console, console.a.key)
    await page.goto(f"{console.url}/#/cost")
    await page.wait_for_selector("table[data-breakdown=user]")
    users = await page.eval_on_selector_all("table[data-breakdown=user] tbody tr", "rs => rs.map(r => r.cells[0].innerText)")
    expected = [i["key"] or "(none)" for i in _api(console, console.a.key, "/metrics/breakdown", dimension="user", metric="cost_usd", limit=15)["items"]]
    assert users == expected and "alice-a" in users
    assert "triage-a" in await page.inner_text("table[data-breakdown=prompt]")
    await screenshot(page, "cost")
    await page.goto(f"{console.url}/#/prices")
    await page.wait_for_selector("#unknown-models")
    assert "a-secret-model" in await page.inner_text("#unknown-models")
    await screenshot(page, "prices")


async def test_console_files_ship_with_a_strict_content_security_policy(console: Console) -> None:
    r = httpx.get(f"{console.url}/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/console/app.js", "/console/app.css", "/console/vendor/uplot/uPlot.iife.min.js", "/console/pages/overview.js"):
        assert httpx.get(f"{console.url}{asset}").status_code == 200, asset
    assert httpx.get(f"{console.url}/console/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
    assert "Web console: " + console.url + "/" in console.up.log.read_text()


def test_the_page_files_are_package_data() -> None:
    """A wheel built from pyproject.toml carries the console and the Swagger UI (no build step for users)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    import fnmatch

    def shipped(package: str, path: Path) -> bool:
        rel = path.relative_to(root / package).as_posix()
        return any(fnmatch.fnmatch(rel, pattern) for pattern in data.get(package, []))

    files = [p for p in (root / "query" / "console").rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    files += [p for p in (root / "llmscope" / "swagger_ui").rglob("*") if p.is_file()]
    missing = [str(p) for p in files if not shipped(p.relative_to(root).parts[0], p)]
    assert files and not missing, missing
    assert os.path.exists(root / "query" / "console" / "vendor" / "uplot" / "LICENSE")


async def test_the_anomalies_page_asks_the_api_with_its_filters(page: Page, console: Console) -> None:
    """A fresh `up` has judged nothing yet (a baseline needs a day): the page says so, and its
    filters reach the API as valid parameters (tests/e2e/test_anomaly_roundtrip.py finds one)."""
    await sign_in(page, console, console.a.key)
    await page.goto(f"{console.url}/#/anomalies")
    await page.wait_for_selector("#anomalies-table tbody tr")
    assert _api(console, console.a.key, "/anomalies") == []
    assert "No anomalies in this range." in await _text(page)
    await page.select_option("#anomaly-filters select[name=status]", "open")
    await page.select_option("#anomaly-filters select[name=metric]", "latency_p95_ms")
    await page.click("#anomaly-filters button[type=submit]")
    await until(page, "() => location.hash.includes('status=open') && location.hash.includes('metric=latency_p95_ms')")
    await page.wait_for_selector("#anomalies-table tbody tr")
    assert "Could not load anomalies" not in await _text(page)
    await screenshot(page, "anomalies")


async def test_an_alert_shows_in_the_live_tail_and_on_the_alerts_page(page: Page, console: Console) -> None:
    """A rule over tenant a's stored spans fires (the real evaluator in `up`): the open live tail
    tells of it, and the alerts page shows the alert and the rule as the API answers them; its
    status filter reaches the API."""
    await sign_in(page, console, console.a.key)
    await page.goto(f"{console.url}/#/live")
    await page.wait_for_selector("#live-status.conn-open")
    rule = {"name": "tenant a has traffic", "severity": "info",
            "condition": {"kind": "threshold", "metric": "requests", "comparison": ">", "value": 0, "window": "1h"}}
    r = httpx.post(f"{console.url}/api/v1/alert-rules", json=rule, headers={"authorization": f"Bearer {console.alerts_key}"})
    assert r.status_code == 201, r.text
    rule_id = r.json()["data"]["id"]
    [alert] = wait_for(lambda: _api(console, console.a.key, "/alerts", rule_id=rule_id), timeout=90, interval=0.5)
    assert alert["status"] == "firing"
    assert all(a["alert_id"] != alert["alert_id"] for a in _api(console, console.b.key, "/alerts"))
    notice = await page.wait_for_selector(f"#live-events li[data-alert-id='{alert['alert_id']}']", timeout=10_000)
    assert "alert firing" in await notice.inner_text() and alert["summary"] in await notice.inner_text()

    await page.goto(f"{console.url}/#/alerts")
    await page.reload()  # the page as a user opening it finds it, not only after the live tail
    shown = f"#alerts-table tr[data-alert-id='{alert['alert_id']}']"
    try:
        await page.wait_for_selector(shown)
    except Exception as exc:
        raise AssertionError(f"alert {alert} not shown; the page says: {await _text(page)}") from exc
    text = await page.inner_text(shown)
    assert "tenant a has traffic" in text and "firing" in text and "requests > 0" in text
    assert await page.locator(f"#rules-table tr[data-rule-id='{rule_id}']").count() == 1
    await screenshot(page, "alerts")

    await page.select_option("#alert-filters select[name=status]", "resolved")
    await page.click("#alert-filters button[type=submit]")
    await until(page, f"() => location.hash.includes('status=resolved') && !document.querySelector(\"{shown}\")"
                      " && document.querySelector('#alerts-table tbody')?.innerText.includes('Loading') === false")
    assert "Could not load alerts" not in await _text(page)
