"""Outbound webhooks against a real HTTP receiver on 127.0.0.1 that verifies every request with the
reference `standardwebhooks` library: what counts as delivered, retried, gone or failed; the same
webhook-id on every retry; no redirect followed; the SSRF guard at creation and at delivery."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from llmscope.netguard import BlockedDestination, UnresolvedHost, vet_url
from schemas.alert_events import event_json, webhook_test_event
from schemas.alerts import AlertRule, AlertRuleCreate
from schemas.webhooks import new_secret
from streams.alerting import RuleState, alert_event
from streams.webhooks import (
    RETRY_SCHEDULE,
    Outcome,
    attempt,
    next_delay,
    parse_retry_after,
    render,
    retry_delay,
    slack_text,
    webhook_client,
)
from tests.webhook_receiver import Receiver, serve_receiver

TESTDATA = Path(__file__).parent / "testdata"
SECRET = new_secret()
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver([SECRET]) as rec:
        yield rec


def _event_body() -> tuple[str, bytes]:
    rule = AlertRule.create(AlertRuleCreate.model_validate({
        "name": "High spend", "severity": "critical",
        "condition": {"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "1h",
                      "group_by": "user"}}), NOW)
    (fired,) = RuleState(rule.id).evaluate(rule, NOW, {"u-42": 7.5})
    event = alert_event(rule, fired)
    return event.id, render(event, "json")


async def _send(url: str, body: bytes = b'{"x":1}', msg_id: str = "evt_1", secrets: list[str] | None = None,
                allow_private: bool = True, timeout: float = 5.0, **client: Any) -> Outcome:
    async with webhook_client(allow_private=allow_private, **client) as http:
        return await attempt(http, url, msg_id, body, secrets or [SECRET], timeout=timeout)


async def test_a_2xx_is_delivered_with_headers_the_reference_library_verifies(receiver: Receiver) -> None:
    msg_id, body = _event_body()
    outcome = await _send(receiver.url, body, msg_id)
    assert outcome.result == "delivered" and outcome.status == 204 and outcome.error is None
    (got,) = receiver.received
    assert got.body == body and got.headers["webhook-id"] == msg_id and got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert got.verified["type"] == "alert.firing" and got.verified["id"] == msg_id
    assert got.verified["data"]["group"] == "u-42" and got.verified["data"]["value"] == 7.5


async def test_a_receiver_down_for_a_while_gets_the_same_webhook_id_until_it_answers_200(receiver: Receiver) -> None:
    receiver.reply = lambda n: (503, {}, b"busy") if n < 3 else (200, {}, b"ok")
    msg_id, body = _event_body()
    outcomes, delays = [], []
    async with webhook_client(allow_private=True) as http:
        while True:  # the worker's loop, without the waiting: each attempt signed at its own time
            outcome = await attempt(http, receiver.url, msg_id, body, [SECRET], timestamp=int(time.time()) + len(outcomes))
            outcomes.append(outcome)
            delay = next_delay(len(outcomes), outcome, key=msg_id)
            if delay is None:
                break
            delays.append(delay)
    assert [o.result for o in outcomes] == ["retry", "retry", "retry", "delivered"]
    assert len(receiver.received) == 4  # nothing after the 200
    assert {r.headers["webhook-id"] for r in receiver.received} == {msg_id}
    assert len({r.headers["webhook-timestamp"] for r in receiver.received}) == 4  # a fresh signature per attempt
    assert all(isinstance(r.verified, dict) for r in receiver.received) and {r.body for r in receiver.received} == {body}
    assert [round(d / b, 1) for d, b in zip(delays, RETRY_SCHEDULE[1:])] == [pytest.approx(1, abs=0.2)] * 3


async def test_410_means_gone(receiver: Receiver) -> None:
    receiver.reply = lambda n: (410, {}, b"")
    outcome = await _send(receiver.url)
    assert outcome.result == "gone" and outcome.status == 410 and next_delay(1, outcome) is None


async def test_429_retry_after_is_honoured_in_seconds_and_as_a_date(receiver: Receiver) -> None:
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=600), usegmt=True)
    receiver.reply = lambda n: (429, {"retry-after": "120"}, b"") if n == 0 else (429, {"retry-after": later}, b"")
    first, second = await _send(receiver.url), await _send(receiver.url)
    assert (first.result, first.status, first.retry_after) == ("retry", 429, 120)
    delay = next_delay(1, first)
    assert delay is not None and delay >= 120  # the schedule alone says about 5 s
    assert second.retry_after is not None and 590 <= second.retry_after <= 600
    huge = Outcome("retry", 429, retry_after=30 * 86400)
    assert next_delay(1, huge) == 28800  # capped at the schedule's longest step


@pytest.mark.parametrize(("status", "result"), [(200, "delivered"), (202, "delivered"), (500, "retry"),
                                                (502, "retry"), (408, "retry"), (400, "failed"), (401, "failed"),
                                                (404, "failed"), (413, "failed")])
async def test_status_codes_are_classified(receiver: Receiver, status: int, result: str) -> None:
    receiver.reply = lambda n: (status, {}, b"")
    assert (await _send(receiver.url)).result == result


async def test_a_receiver_that_does_not_answer_in_time_is_retried(receiver: Receiver) -> None:
    receiver.reply = lambda n: (0, {}, b"")
    started = time.monotonic()
    outcome = await _send(receiver.url, timeout=0.5)
    assert outcome.result == "retry" and "no answer within 0.5 s" in (outcome.error or "")
    assert time.monotonic() - started < 2


async def test_a_read_timeout_of_the_client_is_retried(receiver: Receiver) -> None:
    receiver.reply = lambda n: (0, {}, b"")
    outcome = await _send(receiver.url, read_timeout=0.3)
    assert outcome.result == "retry" and outcome.error == "ReadTimeout: no answer in time"


async def test_a_refused_connection_is_retried(receiver: Receiver) -> None:
    port = receiver.port
    receiver.server.shutdown()
    receiver.server.server_close()
    outcome = await _send(f"http://127.0.0.1:{port}/hook")
    assert outcome.result == "retry" and "ConnectError" in (outcome.error or "")


async def test_a_redirect_is_not_followed_and_fails(receiver: Receiver) -> None:
    receiver.reply = lambda n: (302, {"location": "http://127.0.0.1:1/elsewhere"}, b"")
    outcome = await _send(receiver.url)
    assert outcome.result == "failed" and outcome.status == 302 and "do not follow" in (outcome.error or "")
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_only_the_start_of_a_large_answer_is_read(receiver: Receiver) -> None:
    receiver.reply = lambda n: (200, {}, b"x" * 1_000_000)
    outcome = await _send(receiver.url)
    assert outcome.result == "delivered" and len(outcome.response_excerpt) == 1024


async def test_during_a_rotation_both_old_and_new_secrets_verify(receiver: Receiver) -> None:
    new = new_secret()
    await _send(receiver.url, secrets=[new, SECRET])
    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(got.body, got.headers) == {"x": 1}
    assert Webhook(SECRET).verify(got.body, got.headers) == {"x": 1}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/hook", "http://10.0.0.1:{port}/hook", "http://169.254.169.254/latest/meta-data",
    "http://[::1]:{port}/hook", "http://[::ffff:127.0.0.1]:{port}/hook", "http://localhost:{port}/hook",
    "http://2130706433:{port}/hook", "http://0.0.0.0:{port}/hook", "http://[fc00::1]/hook", "http://100.64.0.1/",
])
async def test_private_destinations_are_refused_at_creation_and_at_delivery(receiver: Receiver, url: str) -> None:
    url = url.format(port=receiver.port)
    with pytest.raises(BlockedDestination):
        await vet_url(url, allow_private=False)
    outcome = await _send(url, allow_private=False)
    assert outcome.result == "failed" and "webhooks may only reach public addresses" in (outcome.error or "")
    assert receiver.received == []


async def test_private_destinations_are_allowed_when_the_setting_is_on(receiver: Receiver) -> None:
    for url in (receiver.url, f"http://localhost:{receiver.port}/hook", f"http://[::ffff:127.0.0.1]:{receiver.port}/hook"):
        await vet_url(url, allow_private=True)
        assert (await _send(url, allow_private=True)).result == "delivered"
    assert len(receiver.received) == 3


async def test_dns_rebinding_after_creation_is_caught_at_delivery(receiver: Receiver) -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # public when vetted, loopback when delivering

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    url = f"http://hooks.example:{receiver.port}/hook"
    await vet_url(url, allow_private=False, resolver=rebinding)
    outcome = await _send(url, allow_private=False, resolver=rebinding)
    assert outcome.result == "failed" and "hooks.example resolves to 127.0.0.1, a loopback address" in (outcome.error or "")
    assert receiver.received == []


async def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    with pytest.raises(BlockedDestination, match="resolves to 10.1.2.3, a private address"):
        await vet_url("https://hooks.example/x", allow_private=False, resolver=mixed)


async def test_an_unresolvable_host_is_a_400_at_creation_and_a_retry_at_delivery() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise UnresolvedHost(f"{host} cannot be resolved")

    with pytest.raises(UnresolvedHost):
        await vet_url("https://nowhere.example/x", allow_private=False, resolver=nxdomain)
    assert (await _send("https://nowhere.example/x", allow_private=False, resolver=nxdomain)).result == "retry"


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(receiver: Receiver) -> None:
    looked_up = []

    async def pinned(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    outcome = await _send(f"http://hooks.test:{receiver.port}/hook", resolver=pinned)
    assert outcome.result == "delivered" and looked_up == ["hooks.test"]
    assert receiver.received[0].headers["host"] == f"hooks.test:{receiver.port}"


def _tls_receiver(receiver: Receiver) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TESTDATA / "hooks.test.pem", TESTDATA / "hooks.test.key")
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)


async def test_tls_to_a_pinned_address_verifies_the_certificate_of_the_url_host(receiver: Receiver) -> None:
    _tls_receiver(receiver)
    trust = ssl.create_default_context(cafile=str(TESTDATA / "hooks.test.pem"))

    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    good = await _send(f"https://hooks.test:{receiver.port}/hook", resolver=to_loopback, verify=trust)
    assert good.result == "delivered" and isinstance(receiver.received[0].verified, dict)
    wrong_name = await _send(f"https://other.test:{receiver.port}/hook", resolver=to_loopback, verify=trust)
    assert wrong_name.result == "retry" and "certificate" in (wrong_name.error or "").lower()
    assert len(receiver.received) == 1


def test_the_retry_schedule_spans_about_a_day_with_jitter_a_replay_reproduces() -> None:
    delays = [retry_delay(n, "evt_1") for n in range(1, len(RETRY_SCHEDULE) + 1)]
    assert delays[0] == 0 and retry_delay(len(RETRY_SCHEDULE) + 1, "evt_1") is None and retry_delay(0) is None
    total = sum(d for d in delays if d is not None)
    assert 0.8 * 86_400 < total < 1.2 * 86_400 and abs(sum(RETRY_SCHEDULE) - 85_355) == 0
    assert all(d is not None and abs(d - b) <= 0.2 * b for d, b in zip(delays, RETRY_SCHEDULE))
    assert delays == [retry_delay(n, "evt_1") for n in range(1, len(RETRY_SCHEDULE) + 1)]
    assert delays != [retry_delay(n, "evt_2") for n in range(1, len(RETRY_SCHEDULE) + 1)]
    spent = Outcome("retry", 503)
    assert next_delay(len(RETRY_SCHEDULE), spent) is None and next_delay(1, Outcome("delivered", 200)) is None


def test_retry_after_reads_seconds_and_dates() -> None:
    now = NOW.timestamp()
    assert parse_retry_after("30", now) == 30 and parse_retry_after(None, now) is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now) == 120
    assert parse_retry_after("soon", now) is None and parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now) == 0


def test_the_slack_body_is_one_escaped_line_of_text() -> None:
    rule = AlertRule.create(AlertRuleCreate.model_validate({
        "name": "<!channel> spend & more", "severity": "warning",
        "condition": {"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "1h"}}), NOW)
    (fired,) = RuleState(rule.id).evaluate(rule, NOW, {"": 12})
    body = json.loads(render(alert_event(rule, fired), "slack"))
    assert body == {"text": ":rotating_light: [WARNING] &lt;!channel&gt; spend &amp; more: cost_usd $12.00 "
                            "(threshold &gt; $5.00 over 1h)"}
    assert slack_text(webhook_test_event("whep_1", NOW)).startswith(":wave: LLMScope test event")
    assert render(webhook_test_event("whep_1", NOW), "json").startswith(b'{"version":1,"type":"webhook.test"')
    event = webhook_test_event("whep_1", NOW)
    assert render(event, "json") == event_json(event)
