"""The console in a real browser against a real `llmscope up`, with two tenants' spans sent through
OTLP ingest. Debian's Chromium driven by Playwright; a missing browser fails the tests, never
skips them (`make test` installs it). Screenshots of every page go to test-artifacts/console/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LLMSCOPE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LLMSCOPE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
TIMEZONE = "America/New_York"  # not the machine's UTC: times must follow the browser's zone
SEC = 1_000_000_000


@dataclass
class Tenant:
    key: str
    traces: list[str] = field(default_factory=list)
    spans: int = 0


@dataclass
class Console:
    up: UpProcess
    a: Tenant  # the dev tenant `up` created
    b: Tenant  # a second tenant, created before `up` started
    b_ingest_only: str
    alerts_key: str  # tenant a's (dev) key that may write alert rules
    tree_trace: str = ""  # tenant a's deep trace
    tree_order: list[tuple[str, int]] = field(default_factory=list)  # (span name, depth), depth-first

    @property
    def url(self) -> str:
        return self.up.query_url


def send(console: Console, key: str, spans: list, service: str) -> float:  # type: ignore[type-arg]
    """POST spans to OTLP ingest; returns the monotonic time of the ack."""
    r = httpx.post(f"{console.up.ingest_url}/v1/traces", content=request_of(spans, service=service).SerializeToString(),
                   headers={"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"}, timeout=10)
    assert r.status_code == 200, r.text
    return time.monotonic()


def _cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "LLMSCOPE_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "-m", "llmscope.cli", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _seed_tenant_a(console: Console) -> None:
    now = time.time_ns() - 60 * SEC
    tid = os.urandom(16)
    root = llm_span(tid, name="agent.run", provider="", model="", start_ns=now, duration_ns=4 * SEC, input_tokens=0, output_tokens=0)
    plan = llm_span(tid, name="plan", provider="", model="", parent=root.span_id, start_ns=now + SEC // 10,
                    duration_ns=2 * SEC, input_tokens=0, output_tokens=0)
    chat = llm_span(tid, name="chat gpt-4o", parent=plan.span_id, start_ns=now + SEC // 5, duration_ns=SEC,
                    input_tokens=1200, output_tokens=300,
                    extra={"user.id": "alice-a", "session.id": "sess-a", "gen_ai.prompt": "Summarise the ticket from alice@example.com",
                           "gen_ai.completion": "The customer asks for a refund of order 1234."})
    tool = llm_span(tid, name="tool.search", provider="", model="", parent=root.span_id, start_ns=now + 2 * SEC + SEC // 5,
                    duration_ns=SEC, input_tokens=0, output_tokens=0)
    claude = llm_span(tid, name="chat claude", provider="anthropic", model="claude-3-5-sonnet", parent=tool.span_id,
                      start_ns=now + 2 * SEC + SEC // 2, duration_ns=SEC // 2, error=True, extra={"user.id": "carol-a"})
    # Sent children first: the tree comes from parent ids, not arrival order.
    tree = [claude, tool, chat, plan, root]
    console.tree_trace = tid.hex()
    console.tree_order = [("agent.run", 0), ("plan", 1), ("chat gpt-4o", 2), ("tool.search", 1), ("chat claude", 2)]
    send(console, console.a.key, tree, "support-bot-a")
    console.a.traces.append(tid.hex())
    console.a.spans += len(tree)
    models = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"), ("acme", "a-secret-model"), ("openai", "gpt-4o")]
    singles = []
    for i in range(8):
        provider, model = models[i % len(models)]
        span = llm_span(name=f"chat {model}", provider=provider, model=model, start_ns=now - (i + 1) * 30 * SEC,
                        duration_ns=(200 + 150 * i) * 1_000_000, input_tokens=100 * (i + 1), output_tokens=20 * (i + 1),
                        error=(i == 5), extra={"user.id": ["alice-a", "dave-a"][i % 2], "gen_ai.prompt.name": "triage-a"})
        singles.append(span)
        console.a.traces.append(span.trace_id.hex())
    send(console, console.a.key, singles[:4], "support-bot-a")
    send(console, console.a.key, singles[4:], "batch-a")
    console.a.spans += len(singles)


def _seed_tenant_b(console: Console) -> None:
    spans = [llm_span(name="chat gpt-4o", extra={"user.id": "bob-b"}, start_ns=time.time_ns() - (i + 2) * 20 * SEC)
             for i in range(3)]
    send(console, console.b.key, spans, "tenant-b-svc")
    console.b.traces += [s.trace_id.hex() for s in spans]
    console.b.spans += len(spans)


def _stored(console: Console, tenant: Tenant) -> bool:
    headers = {"authorization": f"Bearer {tenant.key}", "cache-control": "no-cache"}
    traces = httpx.get(f"{console.url}/api/v1/traces", params={"limit": 500}, headers=headers).json()["data"]
    summary = httpx.get(f"{console.url}/api/v1/metrics/summary", headers=headers).json()["data"]
    return {t["trace_id"] for t in traces} >= set(tenant.traces) and summary["requests"] >= tenant.spans


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console")
    _cli(data_dir, "migrate")
    key_b = _cli(data_dir, "create-key", "--tenant", "tenant-b", "--scopes", "ingest,read")
    b_ingest_only = _cli(data_dir, "create-key", "--tenant", "tenant-b", "--scopes", "ingest")
    alerts_key = _cli(data_dir, "create-key", "--tenant", "dev", "--scopes", "alerts,read")
    # Alert rules evaluated every second, not every minute: the alerts page test waits for one.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LLMSCOPE_ALERT_TICK_SECONDS", "1")
        up = start_up(data_dir)
    try:
        c = Console(up, Tenant(up.key), Tenant(key_b), b_ingest_only, alerts_key)
        _seed_tenant_a(c)
        _seed_tenant_b(c)
        wait_for(lambda: _stored(c, c.a) and _stored(c, c.b), timeout=60, interval=0.3)
        yield c
    finally:
        stop_up(up)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium (make test does it)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


class Offline:
    """Every request leaves only for the server under test: the console and /docs need no network."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.blocked: list[str] = []

    async def __call__(self, route: Route) -> None:
        url = route.request.url
        if urlparse(url).hostname in (self.host, None) or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort()


@pytest.fixture
async def context(browser: Browser, console: Console) -> AsyncIterator[tuple[BrowserContext, Offline]]:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 1000}, timezone_id=TIMEZONE, locale="en-US")
    offline = Offline(urlparse(console.url).hostname or "127.0.0.1")
    await ctx.route("**/*", offline)
    yield ctx, offline
    await ctx.close()
    assert not offline.blocked, f"the page tried to reach the network: {offline.blocked}"


@pytest.fixture
async def page(context: tuple[BrowserContext, Offline]) -> AsyncIterator[Page]:
    p = await context[0].new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    assert not errors, f"JavaScript errors on the page: {errors}"


async def sign_in(page: Page, console: Console, key: str) -> None:
    await page.goto(f"{console.url}/")
    await page.fill("#signin-key", key)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#app:not([hidden])")


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path

