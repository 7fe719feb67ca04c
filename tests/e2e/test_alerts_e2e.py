"""Spans through OTLP ingest into `llmscope up`: an error-rate rule fires and its alert, with its
value, shows in GET /api/v1/alerts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of

RULE = {"name": "support-bot failing", "severity": "critical", "condition": {
    "kind": "threshold", "metric": "error_rate", "comparison": ">", "value": 0.5, "window": "5m",
    "filters": {"service": "support-bot"}}}


def test_an_error_rate_rule_fires_on_ingested_spans_and_its_alert_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMSCOPE_ALERT_TICK_SECONDS", "1")
    up = start_up(tmp_path, "--admin-key")
    try:
        admin = {"authorization": f"Bearer {(tmp_path / 'admin-api-key').read_text().strip()}"}
        # Spans of the minute before: the rule, created next, sees them at its first tick (a rule
        # only sees whole minutes, so spans of the current minute would wait for the next one).
        start = time.time_ns() - 60 * 10**9
        spans = [llm_span(error=i < 8, start_ns=start + i * 10**8) for i in range(10)]
        r = httpx.post(f"{up.ingest_url}/v1/traces", content=request_of(spans, "support-bot").SerializeToString(),
                       headers=up.auth() | {"content-type": "application/x-protobuf"})
        assert r.status_code == 200, r.text
        acked = time.monotonic()
        wait_for(lambda: httpx.get(f"{up.query_url}/api/v1/metrics/summary", headers=up.auth(), params={
            "service": "support-bot", "start": int(time.time()) - 600}).json()["data"]["errors"] == 8, timeout=30)

        r = httpx.post(f"{up.query_url}/api/v1/alert-rules", json=RULE, headers=admin)
        assert r.status_code == 201, r.text
        rule_id = r.json()["data"]["id"]
        created = time.monotonic()

        def firing() -> list[dict]:
            r = httpx.get(f"{up.query_url}/api/v1/alerts", params={"rule_id": rule_id}, headers=up.auth())
            assert r.status_code == 200, r.text
            return r.json()["data"]

        (alert,) = wait_for(firing, timeout=30, interval=0.2)
        shown = time.monotonic()
        assert alert["status"] == "firing" and alert["value"] == pytest.approx(0.8)
        assert alert["rule"]["severity"] == "critical" and "error_rate 80.0%" in alert["summary"]
        print(f"alert listed {shown - acked:.1f}s after the spans' ack, {shown - created:.1f}s after the rule")
    finally:
        stop_up(up)
