"""`llmscope up` in a newcomer's day: Ctrl-C from a real terminal under load, Ctrl-C twice, kill -9,
and restarts between exports. Nothing acknowledged is lost, nothing is counted twice, and no
process outlives `up`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmscope.broker import free_port
from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.processes import descendants, gone
from tests.reliability.conftest import Load

pytestmark = pytest.mark.crash

BANNER_END = "Ctrl-C stops everything"


class TerminalUp:
    """`llmscope up` on a pseudo-terminal, in the terminal's foreground process group, as a user
    runs it: Ctrl-C there signals `up` and every process in its group."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ingest, self.query = free_port(), free_port()
        self.child = pexpect.spawn(
            sys.executable, ["-m", "llmscope.cli", "up", "--data-dir", str(data_dir),
                             "--ingest-port", str(self.ingest), "--query-port", str(self.query)],
            encoding="utf-8", timeout=90, codec_errors="replace",
        )
        self.output = open(data_dir / "terminal.log", "a")  # noqa: SIM115  # closed in close()
        self.child.logfile_read = self.output
        self.child.expect(BANNER_END)
        self.key = (data_dir / "dev-api-key").read_text().strip()

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.output.close()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[list[TerminalUp]]:
    started: list[TerminalUp] = []
    yield started
    for up in started:
        pids = descendants(up.child.pid)
        up.close()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Background:
    """A Load running in its own thread and event loop until stopped."""

    def __init__(self, url: str, key: str, clients: int = 4) -> None:
        self.loads = [Load(httpx.AsyncClient(base_url=url, timeout=10), key, spans=20) for _ in range(clients)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        async def loop(load: Load) -> None:
            while not self._stop.is_set():
                if await load.one() == 0:
                    await asyncio.sleep(0.05)
            await load.client.aclose()

        await asyncio.gather(*(loop(load) for load in self.loads))

    @property
    def acked(self) -> int:
        return sum(len(load.acked) for load in self.loads)

    def stop(self) -> Load:
        self._stop.set()
        self._thread.join(30)
        total = Load(httpx.AsyncClient(), "")
        for load in self.loads:
            total.acked |= load.acked
            total.acked_traces |= load.acked_traces
            total.acked_input_tokens += load.acked_input_tokens
        return total


def summary(up: UpProcess) -> dict:
    r = httpx.get(f"{up.query_url}/api/v1/metrics/summary", headers={**up.auth(), "cache-control": "no-cache"},
                  params={"start": int(time.time()) - 3 * 3600}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def trace_ids(up: UpProcess) -> list[str]:
    """Every trace id the traces API lists (all pages), duplicates kept."""
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 500, "start": int(time.time()) - 3 * 3600}
        if cursor:
            params["cursor"] = cursor
        r = httpx.get(f"{up.query_url}/api/v1/traces", headers=up.auth(), params=params, timeout=30)
        assert r.status_code == 200, r.text
        ids += [t["trace_id"] for t in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return ids


def assert_everything_stored_once(up: UpProcess, load: Load) -> None:
    n = len(load.acked)
    wait_for(lambda: summary(up)["requests"] >= n, timeout=60)
    data = summary(up)
    assert data["requests"] == n, "acknowledged spans lost or counted twice in the metrics"
    assert data["input_tokens"] == load.acked_input_tokens and data["output_tokens"] == 7 * n
    ids = trace_ids(up)
    assert len(ids) == len(set(ids)) == len(load.acked_traces) and set(ids) == load.acked_traces


def test_ctrl_c_in_a_terminal_under_load_stores_everything_acknowledged_and_leaves_no_process(
    tmp_path: Path, terminal: list[TerminalUp]
) -> None:
    up = TerminalUp(tmp_path)
    terminal.append(up)
    load = Background(f"http://127.0.0.1:{up.ingest}", up.key)
    wait_for(lambda: load.acked >= 2000, timeout=60)
    time.sleep(1.0)
    family = descendants(up.child.pid)  # the broker and the CPU-stage processes, now that they run
    assert len(family) >= 2, family

    started = time.monotonic()
    up.child.sendintr()  # what Ctrl-C does: SIGINT to the whole foreground process group
    up.child.expect(pexpect.EOF, timeout=90)
    took = time.monotonic() - started
    up.child.close()
    total = load.stop()
    assert up.child.exitstatus == 0, (up.child.exitstatus, up.child.signalstatus)
    assert not gone(family), "processes outlived up"
    log = (tmp_path / "terminal.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    print(f"Ctrl-C under load: {len(total.acked)} spans acknowledged, up exited after {took:.1f}s")

    again = start_up(tmp_path)
    try:
        assert_everything_stored_once(again, total)
    finally:
        assert stop_up(again) == 0


def test_ctrl_c_twice_stops_at_once_with_a_warning_and_leaves_no_process(
    tmp_path: Path, terminal: list[TerminalUp]
) -> None:
    up = TerminalUp(tmp_path)
    terminal.append(up)
    load = Background(f"http://127.0.0.1:{up.ingest}", up.key)
    wait_for(lambda: load.acked >= 500, timeout=60)
    family = descendants(up.child.pid)
    up.child.sendintr()
    up.child.expect("press Ctrl-C again to stop at once")
    started = time.monotonic()
    up.child.sendintr()
    up.child.expect("stopping at once; acknowledged messages not yet stored are lost")
    up.child.expect(pexpect.EOF, timeout=10)
    assert time.monotonic() - started < 5
    up.child.close()
    load.stop()
    assert up.child.exitstatus == 130
    assert not gone(family), "processes outlived up"


def test_kill_9_of_up_leaves_no_child_behind(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    load = Background(up.ingest_url, up.key, clients=1)
    try:
        wait_for(lambda: load.acked >= 200, timeout=60)
        wait_for(lambda: len(descendants(up.process.pid)) >= 3, timeout=30)  # broker, pool, its helper
        family = descendants(up.process.pid)
        up.process.kill()
        up.process.wait(10)
        assert not gone(family), "processes outlived up after kill -9"
    finally:
        load.stop()
        for pid in descendants(up.process.pid):
            os.kill(pid, signal.SIGKILL)


def _export_one(up: UpProcess, index: int) -> tuple[str, int]:
    """One span through the real OTel SDK exporter; waits until it is readable (one stored batch each)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "restarts"}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{up.ingest_url}/v1/traces", headers={"authorization": f"Bearer {up.key}"})
    ))
    tokens = 1000 + index
    with provider.get_tracer("t").start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
                             "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": tokens,
                             "gen_ai.usage.output_tokens": 1})
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    wait_for(lambda: httpx.get(f"{up.query_url}/api/v1/traces/{trace_id}", headers=up.auth()).status_code == 200, 30)
    return trace_id, tokens


def test_restarting_up_between_exports_loses_and_doubles_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # One partition and one request per stored batch: every restart hands out the same offsets
    # (0, 1, 2, …) again, which is exactly what an offset-based deduplication would drop: the
    # second round's five exports reuse the first round's offsets.
    monkeypatch.setenv("LLMSCOPE_TOPIC_PARTITIONS", "1")
    sent: dict[str, int] = {}
    for _round in range(2):
        up = start_up(tmp_path)
        try:
            for i in range(5):
                trace_id, tokens = _export_one(up, len(sent))
                sent[trace_id] = tokens
            data = summary(up)
        finally:
            assert stop_up(up) == 0
        assert data["requests"] <= len(sent)
    up = start_up(tmp_path)
    try:
        wait_for(lambda: summary(up)["requests"] >= len(sent), timeout=30)
        data = summary(up)
        assert data["requests"] == len(sent) == 10
        assert data["input_tokens"] == sum(sent.values())
        ids = trace_ids(up)
        assert sorted(ids) == sorted(sent)
    finally:
        assert stop_up(up) == 0
