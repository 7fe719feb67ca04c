"""End to end through `llmscope up`: failing spans through OTLP ingest fire an error-rate rule, and a
signed `alert.firing` webhook reaches a receiver on 127.0.0.1; healthy spans then resolve it, and
`alert.resolved` follows. The receiver verifies both with `standardwebhooks`."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of
from tests.webhook_receiver import serve_receiver

PROTOBUF = {"content-type": "application/x-protobuf"}


def _send(up: UpProcess, errors: int, ok: int) -> None:
    """Spans of the current minute, sent early enough in it to be stored before it ends."""
    wait_for(lambda: time.time() % 60 < 45, timeout=20)
    start_ns = time.time_ns()
    spans = [llm_span(error=i < errors, start_ns=start_ns + i * 10**8) for i in range(errors + ok)]
    r = httpx.post(f"{up.ingest_url}/v1/traces", content=request_of(spans, "support-bot").SerializeToString(),
                   headers=up.auth() | PROTOBUF)
    assert r.status_code == 200, r.text


def test_failing_spans_fire_a_signed_webhook_and_healthy_ones_resolve_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSCOPE_ALERT_TICK_SECONDS", "1")
    up = start_up(tmp_path, "--admin-key")
    try:
        admin = {"authorization": f"Bearer {(tmp_path / 'admin-api-key').read_text().strip()}"}
        with serve_receiver([]) as receiver:
            r = httpx.post(f"{up.query_url}/api/v1/webhooks", headers=admin,
                           json={"url": receiver.url, "event_types": ["alert.firing", "alert.resolved"]})
            assert r.status_code == 201, r.text
            endpoint = r.json()["data"]
            receiver.secrets.append(endpoint["secret"])
            rule = {"name": "support-bot failing", "severity": "critical", "webhook_ids": [endpoint["id"]],
                    "condition": {"kind": "threshold", "metric": "error_rate", "comparison": ">", "value": 0.5,
                                  "window": "1m", "filters": {"service": "support-bot"}}}
            r = httpx.post(f"{up.query_url}/api/v1/alert-rules", json=rule, headers=admin)
            assert r.status_code == 201, r.text

            # Spans of the current minute: the rule judges whole minutes, so the next one fires.
            _send(up, errors=8, ok=2)
            acked = time.monotonic()
            fired = wait_for(lambda: receiver.received, timeout=90, interval=0.05)[0]
            arrived = time.monotonic()
            # Healthy spans of the minute now current: the minute after resolves the alert.
            _send(up, errors=0, ok=10)
            wait_for(lambda: len(receiver.received) >= 2, timeout=90, interval=0.05)
    finally:
        stop_up(up)

    firing, resolved = (r.verified for r in receiver.received[:2])
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    assert (firing["type"], resolved["type"]) == ("alert.firing", "alert.resolved")
    assert firing["data"]["alert_id"] == resolved["data"]["alert_id"]
    assert firing["data"]["value"] == pytest.approx(0.8) and resolved["data"]["reason"] == "recovered"
    assert fired.headers["webhook-id"] == firing["id"]
    assert len(receiver.received) == 2  # one fire, one resolve
    print(f"\nalert.firing webhook arrived {arrived - acked:.1f} s after the failing spans' ack "
          "(a rule judges a minute once it has ended)")
