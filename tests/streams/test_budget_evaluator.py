"""The budget evaluator against real chDB and tansu: each threshold fires once per period, also after
a restart (a new evaluator: all it knows is in the store) and after a crash on either side of the
send; a rolling budget re-arms a window after a crossing; a new limit re-arms the thresholds; and the
webhook fan-out makes one delivery of a threshold event however often it is sent.

The session store holds other tests' budgets too: the evaluator evaluates them all, and these tests
look at their own tenant's notifications only.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer

from llmscope.storage import Store
from schemas.budget_rows import unsent_crossings, write_budget
from schemas.budgets import Budget, BudgetCreate
from schemas.notifications import Notification
from schemas.webhooks import StoredEndpoint, WebhookEndpointCreate
from schemas.webhook_rows import write_endpoint
from schemas.times import floor_to
from streams.agents.budgets import BudgetEvaluator
from streams.agents.webhooks import fan_out
from tests.schemas.test_rollup import make_span
from tests.streams.alert_events import events_on
from tests.streams.test_compaction import store_spans

_ids = iter(range(9 * 10**9, 10 * 10**9))


def tenant(name: str) -> str:
    return f"budget-{name}-{uuid.uuid4().hex[:8]}"


def budget_of(store: Store, tenant_id: str, **body: object) -> Budget:
    budget = Budget.create(BudgetCreate.model_validate({"name": "team", "limit_usd": "1", **body}),
                           datetime.now(timezone.utc))
    write_budget(store, tenant_id, budget)
    return budget


def spend(store: Store, tenant_id: str, at: datetime, cost: str) -> None:
    store_spans(store, [make_span(tenant_id, next(_ids), int(at.timestamp() * 1e9), 10**8, cost_usd=Decimal(cost))])


def now_in_month() -> datetime:
    """Now, or a minute into the month if the month has just begun (spans go a minute back)."""
    now = datetime.now(timezone.utc)
    return max(now, now.replace(day=1, hour=0, minute=2, second=0, microsecond=0))


@pytest.fixture(scope="module")
def topic() -> str:
    return f"budgets-{uuid.uuid4().hex[:8]}-events"


def evaluator_sending_to(producer: AIOKafkaProducer, topic: str, store: Store) -> BudgetEvaluator:
    """A new evaluator, as a restarted worker builds it: it knows nothing but the store."""
    async def send(note: Notification) -> None:
        await producer.send_and_wait(topic, note.to_bytes(), key=note.key())

    return BudgetEvaluator(store, send)


async def fired(evaluator: BudgetEvaluator, tenant_id: str, now: datetime) -> list[int]:
    return [n.event.data.threshold for n in await evaluator.tick(now) if n.tenant_id == tenant_id]


async def test_each_threshold_fires_once_per_period_also_across_a_restart(store, producer, topic, settings) -> None:
    t, now = tenant("monthly"), now_in_month()
    budget = budget_of(store, t)
    evaluator = evaluator_sending_to(producer, topic, store)
    assert await fired(evaluator, t, now) == []
    spend(store, t, now - timedelta(minutes=1), "0.55")
    assert await fired(evaluator, t, now) == [50]
    assert await fired(evaluator, t, now) == []
    spend(store, t, now - timedelta(minutes=1), "0.45")  # exactly the limit: 80 and 100 at once
    restarted = evaluator_sending_to(producer, topic, store)
    assert await fired(restarted, t, now) == [80, 100]
    again = evaluator_sending_to(producer, topic, store)
    spend(store, t, now - timedelta(minutes=1), "5")
    assert await fired(again, t, now) == []  # every threshold of this period has fired
    on_topic = [n for n in await events_on(settings, topic) if n.tenant_id == t]
    assert [n.event.data.threshold for n in on_topic] == [50, 80, 100]
    first = on_topic[0].event.data
    assert (first.budget_id, first.spent_usd, first.limit_usd, first.percent) == (budget.id, "0.55", "1", 55.0)
    assert first.period_start == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert first.period_end.day == 1 and first.period_end > now
    assert on_topic[1].event.data.spent_usd == "1" and "reached 80%" in on_topic[1].event.data.summary
    assert len({n.event.id for n in on_topic}) == 3
    # A new limit re-arms the thresholds (the old crossings were at the old limit).
    write_budget(store, t, budget.model_copy(update={"limit_usd": Decimal("12")}))
    assert await fired(again, t, now) == [50]


async def test_a_crash_between_record_and_send_sends_the_recorded_event_next_tick(store, producer, topic) -> None:
    t, now = tenant("crash-before"), now_in_month()
    budget_of(store, t, thresholds=[50])
    spend(store, t, now - timedelta(minutes=1), "0.6")

    async def crash(note: Notification) -> None:
        raise RuntimeError("worker killed before the broker had the event")

    with pytest.raises(RuntimeError):
        await BudgetEvaluator(store, crash).tick(now)
    (recorded,) = [c for c in unsent_crossings(store) if c[0] == t]
    spend(store, t, now - timedelta(minutes=1), "0.1")  # the spend moved on; the event recorded is the one sent
    notes = [n for n in await evaluator_sending_to(producer, topic, store).tick(now) if n.tenant_id == t]
    assert [n.event for n in notes] == [recorded[2]] and notes[0].event.data.spent_usd == "0.6"
    assert not [c for c in unsent_crossings(store) if c[0] == t]
    assert await fired(evaluator_sending_to(producer, topic, store), t, now) == []


async def test_a_crash_after_the_send_sends_the_same_event_id_and_webhooks_deliver_it_once(store, producer, topic) -> None:
    t, now = tenant("crash-after"), now_in_month()
    budget_of(store, t, thresholds=[100])
    endpoint = StoredEndpoint.create(WebhookEndpointCreate(url="https://hooks.example.com/budget",
                                                           event_types=["budget.threshold"]), now)
    write_endpoint(store, t, endpoint)
    spend(store, t, now - timedelta(minutes=1), "1.5")
    sent: list[Notification] = []

    async def send_then_crash(note: Notification) -> None:
        sent.append(note)
        if note.tenant_id == t:
            raise RuntimeError("worker killed before the crossing was marked sent")

    with pytest.raises(RuntimeError):
        await BudgetEvaluator(store, send_then_crash).tick(now)
    replayed = [n for n in await evaluator_sending_to(producer, topic, store).tick(now) if n.tenant_id == t]
    first = [n for n in sent if n.tenant_id == t]
    assert [n.event for n in replayed] == [n.event for n in first]  # the same event, the same id
    assert [d.endpoint_id for d in fan_out(store, first[0])] == [endpoint.id]
    assert fan_out(store, replayed[0]) == []  # the replay finds its delivery: one webhook, not two


async def test_a_rolling_budget_fires_again_only_a_window_after_its_crossing(store, producer, topic) -> None:
    t = tenant("rolling")
    m0 = floor_to(datetime.now(timezone.utc), 60) + timedelta(hours=3)  # ahead: no other spend in these windows
    budget_of(store, t, period="rolling", window="1h", thresholds=[80])
    evaluator = evaluator_sending_to(producer, topic, store)
    spend(store, t, m0 - timedelta(minutes=1), "0.9")
    assert await fired(evaluator, t, m0) == [80]
    spend(store, t, m0 + timedelta(minutes=29), "0.9")
    assert await fired(evaluator, t, m0 + timedelta(minutes=30)) == []  # within the window of the crossing
    spend(store, t, m0 + timedelta(minutes=59), "0.9")
    assert await fired(evaluator_sending_to(producer, topic, store), t, m0 + timedelta(minutes=60)) == [80]
