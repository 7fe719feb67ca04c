"""The alert evaluator against real chDB and tansu: values read from the stored spans, rollups and
anomaly episodes; one notification per transition on the events topic; replay with the same ids.

Ticks are whole minutes a couple of hours ahead of the wall clock: a worker of another test in
this session evaluates every rule at the real time, and a tick behind ours is ignored by the state
machine, so it cannot disturb ours.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer

from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.alert_rows import list_alerts, read_states, write_rule
from schemas.alerts import AlertRule, AlertRuleCreate
from schemas.notifications import Notification
from streams.agents.alerts import AlertEvaluator, floor_to_minute
from tests.schemas.test_rollup import make_span
from tests.streams.alert_events import events_on
from tests.streams.test_compaction import store_spans

MINUTE = timedelta(minutes=1)


def base_minute() -> datetime:
    return floor_to_minute(time.time()) + timedelta(hours=2)


def tenant(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def rule_of(store: Store, tenant_id: str, body: dict, now: datetime) -> AlertRule:
    rule = AlertRule.create(AlertRuleCreate.model_validate(body), now)
    write_rule(store, tenant_id, rule)
    return rule


_ids = iter(range(10**6, 10**9))


def spans(tenant_id: str, minute: datetime, n: int, duration_ns: int = 100_000_000, **kw: object) -> list:
    """n spans starting within `minute`."""
    base = int(minute.timestamp()) * 10**9
    return [make_span(tenant_id, next(_ids), base + i * 10**8, duration_ns, **kw) for i in range(n)]


@pytest.fixture(scope="module")
def topic(settings: Settings) -> str:
    return f"alerts-{uuid.uuid4().hex[:8]}-events"


@pytest.fixture
def evaluator(store: Store, producer: AIOKafkaProducer, topic: str) -> AlertEvaluator:
    async def send(note: Notification) -> None:
        await producer.send_and_wait(topic, note.to_bytes(), key=note.key())

    return AlertEvaluator(store, send)


async def run(evaluator: AlertEvaluator, tenant_id: str, start: datetime, minutes: int) -> list[Notification]:
    """The tenant's notifications of ticks at `start` and the minutes after (other tests' rules tick too)."""
    out: list[Notification] = []
    for i in range(minutes):
        out += [n for n in await evaluator.tick(start + i * MINUTE) if n.tenant_id == tenant_id]
    return out


def kinds(notes: list[Notification]) -> list[str]:
    return [n.event.type for n in notes]


ERROR_RATE = {"name": "errors", "cooldown": "10m", "condition": {
    "kind": "threshold", "metric": "error_rate", "comparison": ">", "value": 0.5, "window": "2m"}}


async def test_a_threshold_rule_fires_once_and_resolves_once(store, evaluator, topic, settings) -> None:
    t, m0 = tenant("threshold"), base_minute()
    rule = rule_of(store, t, ERROR_RATE, m0)
    for i in range(3):
        store_spans(store, spans(t, m0 + i * MINUTE, 4, status_code="error"))
    for i in range(3, 8):
        store_spans(store, spans(t, m0 + i * MINUTE, 4))
    notes = await run(evaluator, t, m0 + MINUTE, 9)
    assert kinds(notes) == ["alert.firing", "alert.resolved"]
    fired, resolved = (n.event.data for n in notes)
    assert fired.alert_id == resolved.alert_id and fired.rule.id == rule.id and all(n.tenant_id == t for n in notes)
    assert fired.fired_at == m0 + MINUTE and fired.value == 1.0
    assert resolved.resolved_at == m0 + 4 * MINUTE  # [m0+2, m0+4): half errors, not > 0.5 and resolved.reason == "recovered" and resolved.peak == 1.0
    (stored,) = list_alerts(store, t, m0, m0 + 60 * MINUTE)
    assert stored == resolved
    on_topic = [e for e in await events_on(settings, topic) if e.tenant_id == t]
    assert [e.event.id for e in on_topic] == [n.event.id for n in notes]


async def test_a_flapping_metric_gives_one_fire_and_one_resolve(store, evaluator) -> None:
    t, m0 = tenant("flapping"), base_minute()
    rule_of(store, t, {"name": "busy", "cooldown": "15m", "condition": {
        "kind": "threshold", "metric": "requests", "comparison": ">", "value": 5, "window": "1m"}}, m0)
    for i in range(0, 12, 2):  # 10 requests one minute, none the next, for 12 minutes
        store_spans(store, spans(t, m0 + i * MINUTE, 10))
    notes = await run(evaluator, t, m0 + MINUTE, 13)
    assert kinds(notes) == ["alert.firing", "alert.resolved"]


async def test_a_late_span_is_seen_by_the_next_tick(store, evaluator) -> None:
    t, m0 = tenant("late"), base_minute()
    rule_of(store, t, {"name": "slow", "condition": {
        "kind": "threshold", "metric": "latency_p95", "comparison": ">", "value": 1000, "window": "5m"}}, m0)
    store_spans(store, spans(t, m0, 10))  # 100 ms each
    assert await run(evaluator, t, m0 + MINUTE, 1) == []
    store_spans(store, spans(t, m0, 10, duration_ns=5 * 10**9))  # slow spans of that minute, arriving late
    notes = await run(evaluator, t, m0 + 2 * MINUTE, 1)
    assert kinds(notes) == ["alert.firing"]
    assert notes[0].event.data.value == pytest.approx(5000, rel=0.01)


async def test_a_replayed_tick_after_a_crash_sends_the_same_ids(store, producer, topic, settings) -> None:
    t, m0 = tenant("replay"), base_minute()
    rule_of(store, t, ERROR_RATE, m0)
    store_spans(store, spans(t, m0, 4, status_code="error"))

    async def send_then_crash(note: Notification) -> None:
        await producer.send_and_wait(topic, note.to_bytes(), key=note.key())
        raise RuntimeError("worker killed before it saved the state")

    with pytest.raises(RuntimeError):
        await AlertEvaluator(store, send_then_crash).tick(m0 + MINUTE)
    assert not [key for key in read_states(store) if key[0] == t]  # the state was not saved
    sent: list[Notification] = []

    async def send(note: Notification) -> None:
        await producer.send_and_wait(topic, note.to_bytes(), key=note.key())
        sent.append(note)

    restarted = AlertEvaluator(store, send)
    await restarted.tick(m0 + MINUTE)
    await restarted.tick(m0 + 2 * MINUTE)
    on_topic = [e for e in await events_on(settings, topic) if e.tenant_id == t]
    assert [e.event.type for e in on_topic] == ["alert.firing", "alert.firing"]
    assert on_topic[0].event == on_topic[1].event == sent[0].event  # same alert id, same event id
    assert len(list_alerts(store, t, m0, m0 + 60 * MINUTE)) == 1


async def test_cost_per_user_is_grouped_from_the_spans(store, evaluator) -> None:
    t, m0 = tenant("per-user"), base_minute()
    rule_of(store, t, {"name": "big spender", "condition": {
        "kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "1h", "group_by": "user",
        "filters": {"service": "chat-api"}}}, m0)
    store_spans(store, spans(t, m0, 3, user_id="alice", service_name="chat-api", cost_usd=Decimal("2.5")))
    store_spans(store, spans(t, m0, 3, user_id="bob", service_name="chat-api", cost_usd=Decimal("1")))
    store_spans(store, spans(t, m0, 3, user_id="bob", service_name="batch", cost_usd=Decimal("9")))
    notes = await run(evaluator, t, m0 + MINUTE, 1)
    assert [(n.event.data.group, n.event.data.value) for n in notes] == [("alice", 7.5)]
    assert "for user=alice" in notes[0].event.data.summary


async def test_an_anomaly_rule_fires_on_an_open_episode_and_resolves_when_it_closes(store, evaluator) -> None:
    t, m0 = tenant("anomaly"), base_minute()
    rule_of(store, t, {"name": "odd", "condition": {"kind": "anomaly", "service": "chat-api", "min_score": 5}}, m0)

    def episode(status: str, score: float, version: int) -> dict:
        return {"tenant_id": t, "episode_id": "ep1", "is_overall": 0, "service_name": "chat-api", "provider": "openai",
                "model": "gpt-4o", "metric": "latency_p95_ms", "direction": "up", "status": status,
                "started_at": m0.strftime("%Y-%m-%d %H:%M:%S"), "ended_at": None, "observed": 900.0,
                "expected": 100.0, "score": score, "peak_at": m0.strftime("%Y-%m-%d %H:%M:%S"), "peak_score": score,
                "peak_observed": 900.0, "peak_expected": 100.0, "version": version}

    store.insert_rows(f"{store.database}.anomalies", [episode("open", 8.0, 1)])
    fired = await run(evaluator, t, m0 + MINUTE, 1)
    assert kinds(fired) == ["alert.firing"]
    assert fired[0].event.data.group == "service=chat-api,provider=openai,model=gpt-4o,metric=latency_p95_ms"
    store.insert_rows(f"{store.database}.anomalies", [episode("closed", 8.0, 2)])
    assert kinds(await run(evaluator, t, m0 + 2 * MINUTE, 1)) == ["alert.resolved"]


async def test_an_absence_rule_fires_for_the_service_that_went_silent(store, evaluator) -> None:
    t, m0 = tenant("absence"), base_minute()
    rule_of(store, t, {"name": "silent", "condition": {"kind": "absence", "minutes": 3, "group_by": "service"}}, m0)
    store_spans(store, spans(t, m0, 1, service_name="quiet"))
    for i in range(6):
        store_spans(store, spans(t, m0 + i * MINUTE, 1, service_name="busy"))
    notes = await run(evaluator, t, m0 + MINUTE, 5)
    assert [(n.event.type, n.event.data.group) for n in notes] == [("alert.firing", "quiet")]
    assert notes[0].event.data.fired_at == m0 + 4 * MINUTE  # 3 minutes after the end of its last minute


@pytest.mark.parametrize("how", ["rule_deleted", "rule_disabled"])
async def test_a_deleted_or_disabled_rule_resolves_its_firing_alert(store, evaluator, how) -> None:
    t, m0 = tenant("deleted"), base_minute()
    rule = rule_of(store, t, ERROR_RATE, m0)
    store_spans(store, spans(t, m0, 4, status_code="error"))
    assert kinds(await run(evaluator, t, m0 + MINUTE, 1)) == ["alert.firing"]
    if how == "rule_deleted":
        write_rule(store, t, rule, deleted=True)
    else:
        write_rule(store, t, rule.model_copy(update={"enabled": False}))
    notes = await run(evaluator, t, m0 + 2 * MINUTE, 2)
    assert kinds(notes) == ["alert.resolved"] and notes[0].event.data.reason == how
    assert list_alerts(store, t, m0, m0 + 60 * MINUTE)[0].status == "resolved"
    if how == "rule_deleted":
        assert (t, rule.id) not in read_states(store)


async def test_an_unreadable_rule_row_does_not_stop_the_other_rules(store, evaluator) -> None:
    t, m0 = tenant("unreadable"), base_minute()
    store.insert_rows(f"{store.database}.alert_rules", [
        {"tenant_id": t, "rule_id": "rule_from_the_future", "rule": '{"kind": "budget"}', "deleted": 0, "version": 1}])
    rule_of(store, t, ERROR_RATE, m0)
    store_spans(store, spans(t, m0, 4, status_code="error"))
    assert kinds(await run(evaluator, t, m0 + MINUTE, 1)) == ["alert.firing"]
