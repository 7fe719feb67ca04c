"""A latency spike sent through OTLP ingest into `llmscope up` comes back as an anomaly episode from
`GET /api/v1/anomalies`, found by a detector that learned its baseline from the stored history.

The spans carry past start times: a day of normal traffic, then the last minutes five times slower.
The first `up` only stores them (its anomaly timer waits an hour); the second, started on the same
data directory with an empty broker (so with no detector state), warms its detectors up from the
stored minutes and judges the spike. That is also the restart of `up`: baselines are rebuilt from
what was stored, not learned from zero.
"""

from __future__ import annotations

import random
import time

import httpx
import pytest

from streams.stages.anomaly import last_closed_minute
from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of

SERVICE = "support-bot"
HISTORY, SPIKE, PER_MINUTE = 1500, 3, 20  # a day and an hour of minutes; the detector judges after a day
NORMAL_MS, SLOW_MS = 800.0, 4000.0


def _send_history_and_spike(up: UpProcess, last: int) -> None:
    """PER_MINUTE spans a minute up to minute `last`; the last SPIKE minutes are the slow ones."""
    rng = random.Random(11)
    spans = []
    for minute in range(last - HISTORY + 1, last + 1):
        slow = minute > last - SPIKE
        for i in range(PER_MINUTE):
            ms = (SLOW_MS if slow else NORMAL_MS) * rng.uniform(0.9, 1.1)
            start = minute * 60_000_000_000 + i * 2_000_000_000
            spans.append(llm_span(start_ns=start, duration_ns=int(ms * 1e6)))
    headers = {**up.auth(), "content-type": "application/x-protobuf"}
    with httpx.Client(timeout=60) as client:
        for at in range(0, len(spans), 5000):
            body = request_of(spans[at:at + 5000], service=SERVICE).SerializeToString()
            r = client.post(f"{up.ingest_url}/v1/traces", content=body, headers=headers)
            assert r.status_code == 200, r.text


def _latency_anomalies(up: UpProcess) -> list[dict]:
    r = httpx.get(f"{up.query_url}/api/v1/anomalies", headers=up.auth(),
                  params={"service": SERVICE, "metric": "latency_p95_ms"})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_latency_spike_through_otlp_appears_in_the_anomalies_api(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    began = time.monotonic()
    monkeypatch.setenv("LLMSCOPE_ANOMALY_GRACE_SECONDS", "0")
    monkeypatch.setenv("LLMSCOPE_ANOMALY_TICK_SECONDS", "3600")
    first = start_up(tmp_path)
    try:
        last = last_closed_minute(time.time(), 0)
        _send_history_and_spike(first, last)
    finally:
        assert stop_up(first) == 0  # stores everything acknowledged before it exits

    monkeypatch.setenv("LLMSCOPE_ANOMALY_TICK_SECONDS", "1")
    second = start_up(tmp_path)
    try:
        found = wait_for(lambda: _latency_anomalies(second), timeout=60, interval=0.5)
        [episode] = found
        assert episode["direction"] == "up" and episode["status"] == "open" and episode["overall"] is False
        assert episode["started_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime((last - SPIKE + 1) * 60)))
        assert episode["peak_observed"] == pytest.approx(SLOW_MS, rel=0.15)
        assert episode["peak_expected"] == pytest.approx(NORMAL_MS, rel=0.15)
        assert episode["peak_score"] >= 4
    finally:
        assert stop_up(second) == 0
    assert time.monotonic() - began < 90
