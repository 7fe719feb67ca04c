"""The Client against a real loopback server: batching, gzip, retries, dedup-safe ids, drops, shutdown."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import llmscope_sdk
import pytest
from conftest import IngestServer, Reply, wait_for
from llmscope_sdk import RetryPolicy
from llmscope_sdk._transport import parse_retry_after

T0 = 1772600767 * 10**9


def event(i: int) -> dict[str, Any]:
    return {"id": f"evt-{i}", "timestamp": T0 + i, "model": "gpt-4o", "input_tokens": i, "latency_ms": 1.0}


def test_batches_by_size_and_posts_gzip_json_with_bearer_key(ingest: IngestServer, make_client: Any) -> None:
    client = make_client(batch_size=3, flush_interval=30)
    for i in range(7):
        assert client.submit(event(i)) is True
    assert client.flush(5)
    assert [len(r.events) for r in ingest.requests] == [3, 3, 1]
    first = ingest.requests[0]
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == "Bearer test-key"
    assert json.loads(gzip.decompress(first.raw)) == {"events": [event(0), event(1), event(2)]}
    assert client.stats == {
        "sent": 7, "dropped_queue_full": 0, "dropped_rejected": 0, "dropped_failed": 0, "retries": 0, "queued": 0
    }  # fmt: skip


def test_flushes_on_time_without_being_asked(ingest: IngestServer, make_client: Any) -> None:
    client = make_client(batch_size=100, flush_interval=0.2)
    started = time.monotonic()
    client.submit(event(1))
    client.submit(event(2))
    assert wait_for(lambda: len(ingest.events) == 2, timeout=3)
    assert time.monotonic() - started >= 0.15
    assert len(ingest.requests) == 1


@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_retries_503_honouring_retry_after_and_resends_the_same_ids(
    ingest: IngestServer, make_client: Any, retry_after: str
) -> None:
    if retry_after == "http-date":
        retry_after = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    ingest.script.append(Reply(503, {"Retry-After": retry_after}, {"error": {"code": "unavailable", "message": "x"}}))
    client = make_client(batch_size=10, flush_interval=30, retry=RetryPolicy(0.01, 0.05, max_elapsed=10))
    for i in range(4):
        client.submit(event(i))
    started = time.monotonic()
    assert client.flush(10)
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5, waited  # the server's wait, not the 10 ms backoff
    assert len(ingest.requests) == 2
    assert [e["id"] for e in ingest.requests[0].events] == [e["id"] for e in ingest.requests[1].events]
    assert len(ingest.unique_events) == 4  # what a deduplicating server keeps: no duplicates
    assert client.stats["retries"] == 1 and client.stats["sent"] == 4


def test_backs_off_on_429_and_gateway_errors_then_gives_up_within_budget(
    ingest: IngestServer, make_client: Any
) -> None:
    ingest.script.extend([Reply(429), Reply(502), Reply(504)] + [Reply(503)] * 200)
    client = make_client(flush_interval=30, retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_elapsed=0.5))
    client.submit(event(1))
    started = time.monotonic()
    assert client.flush(5)
    assert time.monotonic() - started < 1.5
    stats = client.stats
    assert stats["dropped_failed"] == 1 and stats["sent"] == 0 and stats["retries"] >= 3


def test_non_retryable_4xx_drops_the_batch_and_counts_it(ingest: IngestServer, make_client: Any) -> None:
    body = {"error": {"code": "bad_request", "message": "nope", "request_id": "r1"}}
    ingest.script.append(Reply(400, body=body))
    client = make_client(flush_interval=30)
    client.submit(event(1))
    client.submit(event(2))
    assert client.flush(5)
    assert len(ingest.requests) == 1
    assert client.stats["dropped_rejected"] == 2 and client.stats["retries"] == 0


def test_partial_rejection_counts_only_the_rejected_events(ingest: IngestServer, make_client: Any) -> None:
    ingest.script.append(Reply(body={"accepted": 2, "rejected": [{"index": 1, "id": "evt-1", "errors": ["x: y"]}]}))
    client = make_client(flush_interval=30)
    for i in range(3):
        client.submit(event(i))
    assert client.flush(5)
    assert client.stats["sent"] == 2 and client.stats["dropped_rejected"] == 1


def test_413_splits_the_batch(ingest: IngestServer, make_client: Any) -> None:
    ingest.script.append(Reply(413))
    client = make_client(flush_interval=30)
    for i in range(4):
        client.submit(event(i))
    assert client.flush(5)
    assert [len(r.events) for r in ingest.requests] == [4, 2, 2]
    assert client.stats["sent"] == 4


def test_full_queue_drops_and_counts_without_blocking(ingest: IngestServer, make_client: Any) -> None:
    ingest.release.clear()  # the server hangs: the sender is stuck on its first POST
    client = make_client(batch_size=1, max_queue_size=5, flush_interval=30)
    client.submit(event(0))
    assert wait_for(lambda: client.stats["queued"] == 1 and client._queue.qsize() == 0)  # taken by the sender
    started = time.monotonic()
    results = [client.submit(event(i)) for i in range(1, 21)]
    assert time.monotonic() - started < 0.1
    assert results.count(True) == 5 and results.count(False) == 15
    assert client.stats["dropped_queue_full"] == 15
    ingest.release.set()
    assert client.flush(5)
    assert client.stats["sent"] == 6


def test_never_raises_or_blocks_when_the_endpoint_is_down(make_client: Any) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(
        endpoint=f"http://127.0.0.1:{port}", flush_interval=0.01, retry=RetryPolicy(0.01, 0.05, max_elapsed=0.3)
    )
    started = time.monotonic()
    for i in range(50):
        assert client.submit(event(i)) is True
    assert time.monotonic() - started < 0.1
    assert client.flush(5)
    assert client.stats["dropped_failed"] == 50 and client.stats["retries"] > 0


def test_shutdown_flushes_and_later_events_are_dropped(ingest: IngestServer, make_client: Any) -> None:
    client = make_client(flush_interval=60)
    for i in range(5):
        client.submit(event(i))
    assert client.shutdown(5)
    assert len(ingest.events) == 5
    assert client.submit(event(99)) is False
    assert client.shutdown(1)  # idempotent


def test_shutdown_gives_up_on_a_stuck_server_within_its_timeout(ingest: IngestServer, make_client: Any) -> None:
    ingest.script.extend([Reply(503, {"Retry-After": "30"})])
    client = make_client(flush_interval=60, retry=RetryPolicy(0.01, 0.05, max_elapsed=60))
    client.submit(event(1))
    started = time.monotonic()
    assert client.shutdown(0.5) is False
    assert time.monotonic() - started < 2
    assert wait_for(lambda: client.stats["dropped_failed"] == 1, timeout=2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_events(ingest: IngestServer, make_client: Any) -> None:
    client = make_client(flush_interval=30)
    client.submit(event(1))
    assert client.flush(5)
    pid = os.fork()
    if pid == 0:  # the child: the parent's sender thread did not come along
        ok = client.submit(event(2)) and client.flush(5)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert sorted(ingest.unique_events) == ["evt-1", "evt-2"]


def test_events_are_sent_at_interpreter_exit(ingest: IngestServer) -> None:
    script = f"""
import llmscope_sdk
llmscope_sdk.init(api_key="k", endpoint="{ingest.url}", flush_interval=60)
for i in range(3):
    llmscope_sdk.get_client().submit({{"id": f"exit-{{i}}", "timestamp": {T0}}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert sorted(ingest.unique_events) == ["exit-0", "exit-1", "exit-2"]


def test_init_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSCOPE_API_KEY", "env-key")
    monkeypatch.setenv("LLMSCOPE_ENDPOINT", "http://127.0.0.1:9/")
    client = llmscope_sdk.init()
    assert llmscope_sdk.get_client() is client
    assert (client.api_key, client.url) == ("env-key", "http://127.0.0.1:9/api/v1/events")
    monkeypatch.delenv("LLMSCOPE_ENDPOINT")
    assert llmscope_sdk.init(api_key="explicit").url == "http://localhost:4318/api/v1/events"


def test_retry_after_parsing() -> None:
    now = 1_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now + 30, timezone.utc), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now - 30, timezone.utc), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_backoff_is_full_jitter_under_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0)
    delays = [policy.backoff(attempt) for attempt in range(10) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.1 and max(delays) > 3.0
