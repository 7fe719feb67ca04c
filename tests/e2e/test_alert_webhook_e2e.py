"""End to end through `llmscope up`: failing spans through OTLP ingest fire an error-rate rule, the
alert is listed by GET /api/v1/alerts with its value, and a signed `alert.firing` webhook reaches a
receiver on 127.0.0.1; healthy spans then resolve it, and
`alert.resolved` follows. The receiver verifies both with `standardwebhooks`. The spans are dated in
the minute before, so the rule fires at its first tick rather than at the end of the minute."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of
from tests.webhook_receiver import serve_receiver

PROTOBUF = {"content-type": "application/x-protobuf"}


def _send(up: UpProcess, errors: int, ok: int) -> float:
    """Spans of the minute before (a rule judges whole minutes, so the next tick sees them at once);
    returns the monotonic time of the ack."""
    start_ns = time.time_ns() - 60 * 10**9
    spans = [llm_span(error=i < errors, start_ns=start_ns + i * 10**8) for i in range(errors + ok)]
    r = httpx.post(f"{up.ingest_url}/v1/traces", content=request_of(spans, "support-bot").SerializeToString(),
                   headers=up.auth() | PROTOBUF)
    assert r.status_code == 200, r.text
    return time.monotonic()


def _errors_stored(up: UpProcess, errors: int, requests: int) -> bool:
    summary = httpx.get(f"{up.query_url}/api/v1/metrics/summary", headers=up.auth(),
                        params={"service": "support-bot", "start": int(time.time()) - 600}).json()["data"]
    return (summary["errors"], summary["requests"]) == (errors, requests)


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
            _send(up, errors=8, ok=2)
            wait_for(lambda: _errors_stored(up, 8, 10), timeout=30)
            rule = {"name": "support-bot failing", "severity": "critical", "webhook_ids": [endpoint["id"]],
                    "condition": {"kind": "threshold", "metric": "error_rate", "comparison": ">", "value": 0.5,
                                  "window": "5m", "filters": {"service": "support-bot"}}}
            r = httpx.post(f"{up.query_url}/api/v1/alert-rules", json=rule, headers=admin)
            assert r.status_code == 201, r.text
            created = time.monotonic()
            fired = wait_for(lambda: receiver.received, timeout=90, interval=0.05)[0]
            arrived = time.monotonic()
            # The alert is listed with its values, for this tenant only.
            r = httpx.get(f"{up.query_url}/api/v1/alerts", params={"status": "firing"}, headers=up.auth())
            (listed,) = r.json()["data"]
            assert listed["value"] == pytest.approx(0.8) and listed["rule"]["severity"] == "critical"
            assert "error_rate 80.0%" in listed["summary"]
            # Healthy spans, late ones of the same minute: the next minute's tick re-reads the window
            # (8 errors in 20 is not over half) and resolves the alert.
            _send(up, errors=0, ok=10)
            wait_for(lambda: len(receiver.received) >= 2, timeout=90, interval=0.05)
    finally:
        stop_up(up)

    firing, resolved = (r.verified for r in receiver.received[:2])
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    assert (firing["type"], resolved["type"]) == ("alert.firing", "alert.resolved")
    assert firing["data"]["alert_id"] == resolved["data"]["alert_id"]
    assert firing["data"]["value"] == pytest.approx(0.8) and resolved["data"]["reason"] == "recovered"
    assert resolved["data"]["value"] == pytest.approx(0.4)
    assert fired.headers["webhook-id"] == firing["id"]
    assert len(receiver.received) == 2  # one fire, one resolve
    print(f"\nalert.firing webhook arrived {arrived - created:.1f} s after the rule was created over stored "
          "failing spans (with the rule in place first, a rule also waits for the minute to end)")
