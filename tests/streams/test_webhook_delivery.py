"""Webhook delivery through the real worker (tansu, chDB) to real receivers on 127.0.0.1 that verify
every signature with the reference `standardwebhooks` library: test events from the API,
notifications from the events topic fanned out to subscribed endpoints, retries with the same
webhook-id and none after the 2xx, 410 disabling the endpoint, a slow receiver holding up no one."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.alert_events import AnomalyData, AnomalyOpenedEvent, event_id
from schemas.alert_rows import write_rule
from schemas.alerts import AlertRule, AlertRuleCreate
from schemas.notifications import Notification
from schemas.webhook_rows import read_deliveries
from streams.agents.webhooks import fan_out
from streams.alerting import RuleState, alert_event
from tests.conftest import bearer, query_client, running_worker
from tests.reliability.conftest import private_settings
from tests.waiting import eventually
from tests.webhook_receiver import Receiver, serve_receiver


@pytest.fixture(scope="module")
def hooks_settings(settings: Settings) -> Settings:
    return private_settings(settings, "hooks", webhook_allow_private=True, webhook_poll_seconds=0.1,
                            webhook_timeout_seconds=5.0,
                            webhook_retry_delay_scale=0.01)  # retries after 0.05 s, 0.3 s, 1.2 s, 6 s, …


@pytest.fixture(scope="module")
async def worker(hooks_settings: Settings, store: Store) -> AsyncIterator[None]:
    async with running_worker(hooks_settings, store):
        yield


@pytest.fixture(scope="module")
async def api(hooks_settings: Settings, store: Store, worker: None) -> AsyncIterator[httpx.AsyncClient]:
    async with query_client(hooks_settings, store) as client:
        yield client


@pytest.fixture
def tenant(store: Store) -> tuple[str, dict[str, str]]:
    name = f"hooks-{uuid.uuid4().hex[:8]}"
    return name, bearer(store, name, "admin", "read")


async def _endpoint(api: httpx.AsyncClient, headers: dict[str, str], receiver: Receiver, **body: object) -> dict:
    r = await api.post("/api/v1/webhooks", json={"url": receiver.url, **body}, headers=headers)
    assert r.status_code == 201, r.text
    made = r.json()["data"]
    receiver.secrets.append(made["secret"])
    return made


async def _deliveries(api: httpx.AsyncClient, headers: dict[str, str], endpoint_id: str) -> list[dict]:
    r = await api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def _settled(api: httpx.AsyncClient, headers: dict[str, str], endpoint_id: str, count: int = 1) -> list[dict]:
    """The endpoint's deliveries once `count` of them are delivered or failed."""
    async def done() -> list[dict] | None:
        found = await _deliveries(api, headers, endpoint_id)
        return found if sum(d["status"] != "pending" for d in found) >= count else None
    return await eventually(done, timeout=60)


def _anomaly(n: int = 0) -> AnomalyOpenedEvent:
    episode = f"ep-{uuid.uuid4().hex}-{n}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    data = AnomalyData(episode_id=episode, service="chat", provider="openai", model="gpt-4o", metric="latency_p95",
                       direction="up", started_at=now, ended_at=None, observed=900.0, expected=300.0, score=7.5,
                       peak_score=7.5, peak_observed=900.0, peak_expected=300.0, summary="Anomaly: latency_p95 up for chat")
    return AnomalyOpenedEvent(id=event_id(episode, "anomaly.opened"), timestamp=now, data=data)


async def _publish(producer: AIOKafkaProducer, settings: Settings, note: Notification) -> None:
    await producer.send_and_wait(settings.events_topic, note.to_bytes(), key=note.key())


async def test_a_test_event_arrives_signed_and_is_recorded_delivered(api, tenant) -> None:
    _, headers = tenant
    with serve_receiver([]) as receiver:
        made = await _endpoint(api, headers, receiver)
        asked = time.monotonic()
        queued = (await api.post(f"/api/v1/webhooks/{made['id']}/test", headers=headers)).json()["data"]
        await eventually(lambda: receiver.received, interval=0.01)
        print(f"\ntest event received {time.monotonic() - asked:.2f} s after it was asked for (poll every 0.1 s)")
        [delivery] = await _settled(api, headers, made["id"])
    [got] = receiver.received
    assert got.verified["type"] == "webhook.test", got.verified  # the signature verified with the creation secret
    assert got.verified["data"]["endpoint_id"] == made["id"]
    assert got.headers["webhook-id"] == queued["event_id"]
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 1 and delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert (attempt["attempt"], attempt["result"], attempt["status_code"], attempt["error"]) == (1, "delivered", 204, None)
    assert attempt["duration_ms"] > 0 and attempt["next_attempt_at"] is None


async def test_a_notification_goes_to_each_subscribed_endpoint_once_even_when_replayed(
        api, tenant, producer, hooks_settings, store) -> None:
    name, headers = tenant
    with serve_receiver([]) as everything, serve_receiver([]) as anomalies, serve_receiver([]) as alerts_only, \
            serve_receiver([]) as disabled, serve_receiver([]) as slack:
        all_types = await _endpoint(api, headers, everything)
        await _endpoint(api, headers, anomalies, event_types=["anomaly.opened", "anomaly.closed"])
        await _endpoint(api, headers, alerts_only, event_types=["alert.firing"])
        await _endpoint(api, headers, disabled, enabled=False)
        slack_endpoint = await _endpoint(api, headers, slack, format="slack")
        note = Notification(name, _anomaly())
        await _publish(producer, hooks_settings, note)
        await _settled(api, headers, all_types["id"])
        await _settled(api, headers, slack_endpoint["id"])
        await eventually(lambda: anomalies.received, timeout=30)
        # Replayed (a producer that crashed before saving its state sends it again): no new rows.
        await _publish(producer, hooks_settings, note)
        await eventually(lambda: not fan_out(store, note), timeout=30)
        marker = Notification(name, _anomaly(1))  # the topic is in order: once this is delivered, the replay was read
        await _publish(producer, hooks_settings, marker)
        await _settled(api, headers, all_types["id"], count=2)
    assert [r.headers["webhook-id"] for r in everything.received] == [note.event.id, marker.event.id]
    assert [r.verified["id"] for r in anomalies.received] == [note.event.id, marker.event.id]
    assert alerts_only.received == [] and disabled.received == []
    assert [r.verified for r in slack.received][0] == {"text": ":chart_with_upwards_trend: Anomaly: latency_p95 up for chat"}
    assert all(r.verified["id"] for r in everything.received)
    rows = read_deliveries(store, name, all_types["id"], 10)
    assert sorted((d.event_id, d.status, d.attempts) for d in rows) == sorted(
        [(note.event.id, "delivered", 1), (marker.event.id, "delivered", 1)])


async def test_a_receiver_down_for_a_while_gets_the_same_webhook_id_and_nothing_after_its_200(api, tenant) -> None:
    _, headers = tenant
    before = {o: _deliveries_counted(o) for o in ("retry", "delivered")}
    with serve_receiver([], reply=lambda n: (503, {}, b"down") if n < 3 else (200, {}, b"ok")) as receiver:
        made = await _endpoint(api, headers, receiver)
        queued = (await api.post(f"/api/v1/webhooks/{made['id']}/test", headers=headers)).json()["data"]
        [delivery] = await _settled(api, headers, made["id"])
        # A second event to the same endpoint, delivered after the first: the loop has run on since its 200.
        later = (await api.post(f"/api/v1/webhooks/{made['id']}/test", headers=headers)).json()["data"]
        await _settled(api, headers, made["id"], count=2)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [queued["event_id"]] * 4 + [later["event_id"]]  # nothing after the 200
    assert all(not isinstance(r.verified, Exception) for r in receiver.received)
    assert len({r.headers["webhook-timestamp"] + r.headers["webhook-signature"] for r in receiver.received[:4]}) >= 2
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 4
    tried = delivery["attempts"]
    assert [(a["attempt"], a["result"], a["status_code"]) for a in tried] == [
        (1, "retry", 503), (2, "retry", 503), (3, "retry", 503), (4, "delivered", 200)]
    assert all(a["error"] == "the receiver answered 503" and a["next_attempt_at"] for a in tried[:3])
    assert tried[3]["next_attempt_at"] is None and tried[0]["response_excerpt"] == "down"
    # The worker's /metrics counts every attempt by outcome (other tests' workers may add to it too).
    assert _deliveries_counted("retry") - before["retry"] >= 3
    assert _deliveries_counted("delivered") - before["delivered"] >= 2


def _deliveries_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("llmscope_webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def test_410_disables_the_endpoint_and_nothing_more_is_sent_to_it(api, tenant, producer, hooks_settings) -> None:
    name, headers = tenant
    with serve_receiver([], reply=lambda n: (410, {}, b"")) as receiver:
        made = await _endpoint(api, headers, receiver)
        await api.post(f"/api/v1/webhooks/{made['id']}/test", headers=headers)
        [delivery] = await _settled(api, headers, made["id"])
        endpoint = (await api.get(f"/api/v1/webhooks/{made['id']}", headers=headers)).json()["data"]
        await _publish(producer, hooks_settings, Notification(name, _anomaly()))
        r = await api.post(f"/api/v1/webhooks/{made['id']}/test", headers=headers)
    assert delivery["status"] == "failed" and delivery["attempt_count"] == 1
    assert delivery["attempts"][0]["result"] == "gone"
    assert endpoint["enabled"] is False and "410" in endpoint["disabled_reason"]
    assert r.status_code == 400 and "410" in r.json()["error"]["message"]
    assert len(receiver.received) == 1
    # Enabling it again clears the reason.
    again = await api.patch(f"/api/v1/webhooks/{made['id']}", json={"enabled": True}, headers=headers)
    assert again.json()["data"]["enabled"] is True and again.json()["data"]["disabled_reason"] is None


async def test_a_slow_receiver_holds_up_no_other_endpoint(api, tenant) -> None:
    _, headers = tenant
    with serve_receiver([], reply=lambda n: (0, {}, b"")) as slow, serve_receiver([]) as fast:
        stalled = await _endpoint(api, headers, slow)
        prompt = await _endpoint(api, headers, fast)
        for _ in range(3):  # more than the per-endpoint bound
            await api.post(f"/api/v1/webhooks/{stalled['id']}/test", headers=headers)
        await eventually(lambda: slow.received, timeout=30)
        await api.post(f"/api/v1/webhooks/{prompt['id']}/test", headers=headers)
        await _settled(api, headers, prompt["id"])
        waiting = await _deliveries(api, headers, stalled["id"])
    assert all(d["attempt_count"] == 0 and d["status"] == "pending" for d in waiting)  # still in its first attempt
    assert len(slow.received) <= 2  # at most LLMSCOPE_WEBHOOK_ENDPOINT_CONCURRENCY in flight to one endpoint
    assert len(fast.received) == 1


async def test_an_alert_goes_only_to_the_endpoints_its_rule_names_also_once_the_rule_is_deleted(
        api, tenant, producer, hooks_settings, store) -> None:
    name, headers = tenant
    with serve_receiver([]) as named, serve_receiver([]) as other:
        chosen = await _endpoint(api, headers, named)
        await _endpoint(api, headers, other)
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        rule = AlertRule.create(AlertRuleCreate.model_validate({
            "name": "Errors", "webhook_ids": [chosen["id"]],
            "condition": {"kind": "threshold", "metric": "errors", "comparison": ">", "value": 0, "window": "5m"}}), now)
        write_rule(store, name, rule)
        state = RuleState(rule.id)
        (fired,) = state.evaluate(rule, now, {"": 3.0})
        await _publish(producer, hooks_settings, Notification(name, alert_event(rule, fired)))
        await _settled(api, headers, chosen["id"])
        write_rule(store, name, rule, deleted=True)
        (resolved,) = state.close_all(now + timedelta(minutes=1), "rule_deleted")
        await _publish(producer, hooks_settings, Notification(name, alert_event(rule, resolved)))
        await _settled(api, headers, chosen["id"], count=2)
    assert [r.verified["type"] for r in named.received] == ["alert.firing", "alert.resolved"]
    assert other.received == []
    assert fan_out(store, Notification(name, _anomaly())) != []  # events of no rule still go everywhere
