"""Session fixtures that start real parts once: a tansu broker, a chDB store, `llmscope up`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from llmscope.auth import KeyResolver, create_key
from llmscope.broker import EmbeddedBroker, free_port
from llmscope.kafka import ensure_topics
from llmscope.settings import Settings, load_settings
from llmscope.storage import Store, open_store
from llmscope.storage.migrate import apply_migrations
from query.app import create_query_app
from streams.sink import StoreSink
from streams.worker import create_worker_app
from tests.processes import kill_all, mark_session, marked
from tests.tls_proxy import Pki, make_pki


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION] = mark_session()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started outlived the session (a process owns its
    children; a test that leaves one behind has found a bug or is one)."""
    mark = session.config.stash.get(_SESSION, "")
    deadline = time.monotonic() + 10  # children of stopped parents may take a moment to go
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        names = [f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120] for pid in left
                 if Path(f"/proc/{pid}/cmdline").exists()]
        kill_all(left)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: {len(left)} process(es) outlived the test session:", red=True)
            for name in names:
                reporter.write_line(f"  {name}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_SESSION = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A certificate authority of the session's own, its server and client certificates."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmscope")


@pytest.fixture(scope="session")
def settings(broker: EmbeddedBroker, data_dir: Path) -> Settings:
    # chDB allows one data path per process: every in-process test shares this one.
    return load_settings(
        data_dir=data_dir,
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_idempotence=False,
        topic_partitions=2,
        ingest_topic="test-ingest",
        deadletter_topic="test-deadletter",
        worker_name="test-worker",
        sink_batch_seconds=0.1,
        # Workers restart often in tests; tansu makes a restarted one wait about twice this.
        kafka_session_timeout_seconds=3.0,
        # Every worker shares the store's webhook outbox: only the webhook tests' own workers deliver.
        webhook_poll_seconds=3600,
        # An idle leader's polls wait this long: rollups and deliveries then come only from the
        # wakes of what this process stores (streams/pacing.py), so a missed wake fails a test.
        idle_poll_seconds=3600,
    )


@pytest.fixture(scope="session")
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    apply_migrations(s, settings.retention_days)
    yield s
    s.close()


@pytest.fixture(scope="session")
def tenant_keys(store: Store) -> dict[str, str]:
    """Keys for two tenants, plus keys with a single scope, to test isolation and scopes."""
    return {
        "a": create_key(store, "tenant-a", "a", {"ingest", "read", "admin"}),
        "b": create_key(store, "tenant-b", "b", {"ingest", "read", "admin"}),
        "a_ingest_only": create_key(store, "tenant-a", "a ingest", {"ingest"}),
        "a_read_only": create_key(store, "tenant-a", "a read", {"read"}),
    }


def bearer(store: Store, tenant: str, *scopes: str) -> dict[str, str]:
    """Authorization headers with a new key of `tenant` holding `scopes`."""
    return {"authorization": f"Bearer {create_key(store, tenant, 'test', set(scopes))}"}


@contextlib.asynccontextmanager
async def query_client(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The query API in this process, over the given store, as an HTTP client."""
    app = create_query_app(settings, store, KeyResolver(store, 30.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as client:
        yield client


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, store: Store) -> AsyncIterator[StoreSink]:
    """The Faust worker in this process, consuming the settings' topics until the block ends."""
    await ensure_topics(settings)
    app, sink = create_worker_app(settings, store)
    await app.start()
    try:
        yield sink
    finally:
        await app.stop()


class UpProcess:
    def __init__(self, process: subprocess.Popen[str], ingest: str, query: str, key: str, log: Path) -> None:
        self.process, self.ingest_url, self.query_url, self.key, self.log = process, ingest, query, key, log

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def start_up(
    data_dir: Path, *extra: str, ports: tuple[int, int] | None = None, timeout: float = 90.0,
    env: dict[str, str] | None = None,
) -> UpProcess:  # fmt: skip
    """`env`: more LLMSCOPE_* variables (with LLMSCOPE_TLS_CERT_FILE the URLs are https://)."""
    ingest_port, query_port = ports or (free_port(), free_port())
    log = data_dir / f"up-{ingest_port}.log"
    scheme = "https" if env and "LLMSCOPE_TLS_CERT_FILE" in env else "http"
    env = {k: v for k, v in os.environ.items() if k not in ("LLMSCOPE_INGEST_HOST", "LLMSCOPE_QUERY_HOST")} | (env or {})
    cmd = [sys.executable, "-m", "llmscope.cli", "up", "--data-dir", str(data_dir),
           "--ingest-port", str(ingest_port), "--query-port", str(query_port), *extra]
    process = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llmscope up exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if "Ctrl-C stops everything" in log.read_text():
            key = (data_dir / "dev-api-key").read_text().strip()
            return UpProcess(process, f"{scheme}://127.0.0.1:{ingest_port}", f"{scheme}://127.0.0.1:{query_port}", key, log)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"llmscope up not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def stop_up(up: UpProcess, timeout: float = 60.0) -> int:
    up.process.send_signal(signal.SIGTERM)
    return up.process.wait(timeout)


@pytest.fixture(scope="session")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """`llmscope up` as a user runs it, in its own process (it owns its own chDB directory)."""
    running = start_up(tmp_path_factory.mktemp("up"))
    yield running
    stop_up(running)


@pytest.fixture
async def up_client(up: UpProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy; return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
