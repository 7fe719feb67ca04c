"""The Python SDK against `llmscope up`: wrapped OpenAI calls nest under user spans in one trace,
and events survive the ingest going down and coming back, neither lost nor duplicated."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import llmscope_sdk
import openai
import pytest
from llmscope_sdk import Client

from llmscope.broker import free_port
from tests.conftest import UpProcess, start_up, stop_up, wait_for

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1764000000, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240,
              "prompt_tokens_details": {"cached_tokens": 1000}, "completion_tokens_details": {"reasoning_tokens": 8}},
}


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    """A stand-in for the OpenAI API (a third party we cannot run here)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.dumps(COMPLETION).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _trace(up: UpProcess, trace_id: str) -> list[dict] | None:
    r = httpx.get(f"{up.query_url}/api/v1/traces/{trace_id}", headers=up.auth())
    return r.json()["data"]["spans"] if r.status_code == 200 else None


def test_wrapped_openai_call_nests_under_the_agent_span(up: UpProcess, fake_openai: str) -> None:
    client = Client(up.key, up.ingest_url, service_name="sdk-e2e", flush_interval=0.2)
    llm = llmscope_sdk.wrap_openai(openai.OpenAI(api_key="sk-test", base_url=fake_openai), llmscope_client=client)
    with llmscope_sdk.span("answer-question", kind="agent", user_id="u-42", client=client):
        trace_id = llmscope_sdk.current_span().trace_id
        llm.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Capital of France?"}])
    assert client.flush(10)
    client.shutdown()

    spans = wait_for(lambda: (s := _trace(up, trace_id)) and len(s) == 2 and s, timeout=30)
    by_op = {s["operation"]: s for s in spans}
    agent, chat = by_op["agent"], by_op["chat"]
    assert chat["parent_span_id"] == agent["span_id"]
    assert chat["provider"] == "openai"
    assert chat["model"] == "gpt-4o" and chat["model_version"] == "2024-08-06"  # normalised by enrichment
    assert chat["input_tokens"] == 1200 and chat["output_tokens"] == 40
    assert chat["cached_input_tokens"] == 1000 and chat["reasoning_tokens"] == 8
    assert chat["user_id"] == "u-42" and agent["service"] == "sdk-e2e"
    assert client.stats["sent"] == 2 and client.stats["dropped_failed"] == 0


def _event_traces(up: UpProcess, service: str) -> list[dict]:
    r = httpx.get(f"{up.query_url}/api/v1/traces", params={"service": service, "limit": 500}, headers=up.auth())
    return r.json()["data"]


def _summary(up: UpProcess, service: str) -> dict:
    r = httpx.get(f"{up.query_url}/api/v1/metrics/summary", params={"service": service},
                  headers={**up.auth(), "cache-control": "no-cache"})
    return r.json()["data"]


def test_events_sent_while_ingest_is_down_arrive_once_it_is_back(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # One partition, and each request stored before the next is sent: the restarted broker hands
    # out offsets 0, 1, … again, so an offset-based deduplication would drop the new batches.
    monkeypatch.setenv("LLMSCOPE_TOPIC_PARTITIONS", "1")
    ports = (free_port(), free_port())
    first = start_up(tmp_path, ports=ports)
    client = Client(first.key, first.ingest_url, service_name="outage", flush_interval=0.2, batch_size=10)

    def record(i: int) -> None:
        client.submit({"id": f"outage-{i}", "timestamp": time.time_ns(), "operation": "chat", "provider": "openai",
                       "model": "gpt-4o", "input_tokens": i, "output_tokens": 1, "latency_ms": 5, "status": "ok",
                       "service_name": "outage"})

    for batch in range(2):
        for i in range(batch * 10, batch * 10 + 10):
            record(i)
        assert client.flush(10)
        wait_for(lambda n=batch * 10 + 10: len(_event_traces(first, "outage")) == n, timeout=30)
    assert stop_up(first) == 0

    for i in range(20, 50):  # the ingest is down: the SDK keeps them and retries
        record(i)
    wait_for(lambda: client.stats["retries"] > 0, timeout=30)
    second = start_up(tmp_path, ports=ports)
    try:
        assert client.flush(40)
        traces = wait_for(lambda: (t := _event_traces(second, "outage")) and len(t) >= 50 and t, timeout=30)
        assert len(traces) == 50  # none lost, none duplicated
        assert sorted(t["input_tokens"] for t in traces) == list(range(50))
        assert all(t["span_count"] == 1 for t in traces)
        data = wait_for(lambda: (d := _summary(second, "outage"))["requests"] == 50 and d, timeout=30)
        assert data["input_tokens"] == sum(range(50)) and data["output_tokens"] == 50  # every metric counts each once
        assert client.stats["dropped_failed"] == 0 and client.stats["dropped_queue_full"] == 0
    finally:
        client.shutdown()
        assert stop_up(second) == 0
