"""End to end through `llmscope up`: priced spans over OTLP reach 60 % of a budget and a signed
`budget.threshold` webhook for 50 % reaches a receiver on 127.0.0.1; `up` is restarted (a new
worker, an empty broker, the same store) and the 50 % threshold is not sent again, while more
spend sends the 100 % one. The receiver verifies each with `standardwebhooks`."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.otlp_factory import llm_span, request_of
from tests.webhook_receiver import serve_receiver

PROTOBUF = {"content-type": "application/x-protobuf"}
# gpt-4o at $2.50 / $10 per million tokens: 100 input and 20 output tokens cost $0.00045.
SPAN_COST = Decimal("0.00045")


def _send(up: UpProcess, n: int) -> None:
    spans = [llm_span(start_ns=time.time_ns() - 10**9 - i * 10**6) for i in range(n)]
    r = httpx.post(f"{up.ingest_url}/v1/traces", content=request_of(spans, "budgeted-bot").SerializeToString(),
                   headers=up.auth() | PROTOBUF)
    assert r.status_code == 200, r.text


def _spent(up: UpProcess) -> Decimal:
    r = httpx.get(f"{up.query_url}/api/v1/usage", headers=up.auth())
    return Decimal(r.json()["data"]["usage"]["spent_usd"])


def _thresholds(receiver) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.verified["data"]["threshold"] for r in receiver.received if isinstance(r.verified, dict)]


def test_a_threshold_webhook_is_sent_once_per_period_across_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSCOPE_BUDGET_TICK_SECONDS", "1")
    up = start_up(tmp_path, "--admin-key")
    admin = {"authorization": f"Bearer {(tmp_path / 'admin-api-key').read_text().strip()}"}
    try:
        with serve_receiver([]) as receiver:
            r = httpx.post(f"{up.query_url}/api/v1/webhooks", headers=admin,
                           json={"url": receiver.url, "event_types": ["budget.threshold"]})
            assert r.status_code == 201, r.text
            receiver.secrets.append(r.json()["data"]["secret"])
            _send(up, 10)
            wait_for(lambda: _spent(up) == 10 * SPAN_COST, timeout=30)
            r = httpx.post(f"{up.query_url}/api/v1/budgets", headers=admin,
                           json={"name": "bot", "limit_usd": str(15 * SPAN_COST), "thresholds": [50, 100]})
            assert r.status_code == 201, r.text
            budget = r.json()["data"]
            wait_for(lambda: _thresholds(receiver), timeout=30, interval=0.05)
            stop_up(up)

            up = start_up(tmp_path, "--admin-key")
            _send(up, 5)  # 15 spans: the limit
            wait_for(lambda: len(receiver.received) >= 2, timeout=30, interval=0.05)
            time.sleep(1)  # a 50 % sent again would be delivered with the 100 %, at the latest
            status = httpx.get(f"{up.query_url}/api/v1/budgets/{budget['id']}/status", headers=up.auth()).json()
    finally:
        stop_up(up)

    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    assert _thresholds(receiver) == [50, 100]
    first, second = (r.verified for r in receiver.received)
    assert first["type"] == "budget.threshold" and first["data"]["budget_id"] == budget["id"]
    assert Decimal(first["data"]["spent_usd"]) == 10 * SPAN_COST and first["data"]["percent"] == pytest.approx(66.67)
    assert Decimal(second["data"]["spent_usd"]) == 15 * SPAN_COST and first["id"] != second["id"]
    assert receiver.received[0].headers["webhook-id"] == first["id"]
    assert status["data"]["within_budget"] is False
