"""The evaluator's timer in the real worker (tansu, chDB), its clock driven through whole minutes:
spans produced to the ingest topic fire a rule, and a restarted worker does not fire it again."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from llmscope.kafka import IngestProducer, ensure_topics
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.alert_rows import list_alerts, read_states, write_rule
from schemas.alerts import AlertRule, AlertRuleCreate
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage
from streams.agents.alerts import floor_to_minute
from streams.worker import create_worker_app
from tests.otlp_factory import llm_span, request_of
from tests.reliability.conftest import private_settings
from tests.streams.alert_events import events_on
from tests.waiting import eventually


class Clock:
    """The time the worker's alert timer reads; the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


@asynccontextmanager
async def worker(settings: Settings, store: Store, clock: Clock) -> AsyncIterator[None]:
    await ensure_topics(settings)
    app, _ = create_worker_app(settings, store, alert_clock=clock)
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def test_the_timer_fires_a_rule_once_and_a_restarted_worker_does_not_fire_it_again(settings, store) -> None:
    s = private_settings(settings, "alert-timer", alert_tick_seconds=0.2,
                         events_topic=f"alert-timer-{uuid.uuid4().hex[:8]}-events")
    tenant = f"timer-{uuid.uuid4().hex[:8]}"
    m0 = floor_to_minute(time.time()) + timedelta(hours=2)  # ahead of any real-time evaluator in this session
    rule = AlertRule.create(AlertRuleCreate.model_validate({"name": "errors", "condition": {
        "kind": "threshold", "metric": "errors", "comparison": ">=", "value": 3, "window": "5m"}}), m0)
    write_rule(store, tenant, rule)
    clock = Clock(m0)
    producer = IngestProducer(s)
    await producer.connect()
    try:
        async with worker(s, store, clock):
            start = int(m0.timestamp()) * 10**9
            spans = [llm_span(error=True, start_ns=start + i * 10**9) for i in range(5)]
            await producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), request_of(spans).SerializeToString()))
            await eventually(lambda: _rollup_errors(store, tenant) == 5)
            clock.at = m0 + timedelta(minutes=1, seconds=30)
            await eventually(lambda: list_alerts(store, tenant, m0, m0 + timedelta(hours=1), status="firing"))

        clock.at = m0 + timedelta(minutes=2, seconds=5)  # still breaching when the new worker ticks
        async with worker(s, store, clock):
            await eventually(lambda: read_states(store)[(tenant, rule.id)]["last_tick"] >= (m0 + timedelta(minutes=2)).timestamp())
    finally:
        await producer.close()

    events = [e for e in await events_on(s, s.events_topic) if e.tenant_id == tenant]
    assert [e.event.type for e in events] == ["alert.firing"]
    (alert,) = list_alerts(store, tenant, m0, m0 + timedelta(hours=1))
    assert alert.alert_id == events[0].event.data.alert_id and alert.status == "firing"
    assert alert.fired_at == m0 + timedelta(minutes=1) and alert.value == 5


def _rollup_errors(store: Store, tenant: str) -> int:
    df = store.query(f"SELECT sum(errors) AS e FROM {store.database}.rollup_minute FINAL WHERE tenant_id = {{t:String}}",
                     {"t": tenant})
    return int(df["e"][0] or 0)
