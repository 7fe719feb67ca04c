"""What webhooks carry: one versioned envelope, `{"version", "type", "id", "timestamp", "data"}`.

Types: `alert.firing`, `alert.resolved` (a rule's group started or stopped breaching),
`anomaly.opened`, `anomaly.closed` (an anomaly episode of a series), `webhook.test` (sent on
request to check an endpoint), and `budget.threshold` (a budget's spend reached one of its
thresholds; once per threshold and period, schemas/budgets.py).

- `id` identifies the event for all time and is deterministic (a firing replayed after a crash
  has the same id). It is the `webhook-id` header of every delivery attempt, so receivers
  deduplicate on it. It never contains '.', which Standard Webhooks reserves.
- `timestamp` is when the event happened (the fire or resolve time), not when it was sent; the
  `webhook-timestamp` header says when each attempt was signed.
- `version` is 1. New fields may be added without a new version (receivers ignore fields they do
  not know); renaming, removing or changing the meaning of a field makes version 2.
- Times are ISO 8601 in UTC. Numbers are the analytics API's units (latency in ms, cost in USD,
  error_rate a fraction). `data.summary` is one readable line (the Slack format sends it).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

EVENT_VERSION: Literal[1] = 1
EVENT_TYPES = ("alert.firing", "alert.resolved", "anomaly.opened", "anomaly.closed", "webhook.test",
               "budget.threshold")
EventType = Literal["alert.firing", "alert.resolved", "anomaly.opened", "anomaly.closed", "webhook.test",
                    "budget.threshold"]
Comparison = Literal[">", ">=", "<", "<="]
ResolveReason = Literal["recovered", "no_data", "rule_disabled", "rule_changed", "rule_deleted"]


def event_id(*parts: str) -> str:
    """A deterministic event id from what identifies the event (e.g. alert id and type)."""
    return "evt_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class RuleRef(_Model):
    id: str
    name: str
    kind: Literal["threshold", "anomaly", "absence"]
    severity: Literal["info", "warning", "critical"]
    description: str = ""


class AlertData(_Model):
    """One alert: a rule's group that breached (firing) and, later, stopped (resolved).

    `value` is the metric at the event (None when resolved for lack of data); `peak` the worst
    value seen while firing; `threshold`/`comparison` what it was compared with. For anomaly rules
    the value is the episode's peak score, for absence rules the seconds since the last span."""

    alert_id: str
    status: Literal["firing", "resolved"]
    rule: RuleRef
    metric: str | None
    comparison: Comparison
    threshold: float
    value: float | None
    peak: float | None
    window: str | None
    group_by: str | None
    group: str | None
    started_at: datetime = Field(description="When the condition started to hold (the start of `for`).")
    fired_at: datetime
    resolved_at: datetime | None = None
    reason: ResolveReason | None = Field(None, description="Why it resolved; None while firing.")
    summary: str


class AnomalyData(_Model):
    """One anomaly episode of a series; `score` in robust standard deviations from the baseline."""

    episode_id: str
    service: str | None
    provider: str | None
    model: str | None
    metric: str
    direction: Literal["up", "down"]
    started_at: datetime
    ended_at: datetime | None
    observed: float | None
    expected: float | None
    score: float | None
    peak_score: float
    peak_observed: float
    peak_expected: float
    summary: str


class BudgetThresholdData(_Model):
    """One threshold of a budget reached in a period. Money is exact decimal text (USD)."""

    budget_id: str
    name: str
    scope: Literal["tenant", "model", "user_id", "tag"]
    scope_value: str | None
    period: Literal["monthly", "rolling"]
    window: str | None
    threshold: int = Field(description="The percent of the limit reached.")
    spent_usd: str
    limit_usd: str
    percent: float
    period_start: datetime
    period_end: datetime = Field(description="Rolling budgets: the end of the window when it was reached.")
    summary: str


class WebhookTestData(_Model):
    endpoint_id: str
    summary: str


class _Envelope(_Model):
    version: Literal[1] = EVENT_VERSION
    type: EventType
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    timestamp: datetime
    data: BaseModel | dict[str, Any]


class AlertFiringEvent(_Envelope):
    type: Literal["alert.firing"] = "alert.firing"
    data: AlertData


class AlertResolvedEvent(_Envelope):
    type: Literal["alert.resolved"] = "alert.resolved"
    data: AlertData


class AnomalyOpenedEvent(_Envelope):
    type: Literal["anomaly.opened"] = "anomaly.opened"
    data: AnomalyData


class AnomalyClosedEvent(_Envelope):
    type: Literal["anomaly.closed"] = "anomaly.closed"
    data: AnomalyData


class WebhookTestEvent(_Envelope):
    type: Literal["webhook.test"] = "webhook.test"
    data: WebhookTestData


class BudgetThresholdEvent(_Envelope):
    type: Literal["budget.threshold"] = "budget.threshold"
    data: BudgetThresholdData


WebhookEvent = Annotated[
    AlertFiringEvent | AlertResolvedEvent | AnomalyOpenedEvent | AnomalyClosedEvent | WebhookTestEvent
    | BudgetThresholdEvent,
    Field(discriminator="type"),
]
_EVENTS: TypeAdapter[WebhookEvent] = TypeAdapter(WebhookEvent)


def parse_event(body: bytes | str) -> WebhookEvent:
    """An event from its JSON (what the outbox stores, what a receiver gets)."""
    return _EVENTS.validate_json(body)


def event_json(event: WebhookEvent) -> bytes:
    """The event's JSON as sent and signed: compact, fields in declaration order."""
    return event.model_dump_json().encode()


def webhook_test_event(endpoint_id: str, now: datetime) -> WebhookTestEvent:
    """A test event; each request to test an endpoint is a new event (random id)."""
    return WebhookTestEvent(
        id="evt_test_" + secrets.token_hex(12), timestamp=now,
        data=WebhookTestData(endpoint_id=endpoint_id, summary="LLMScope test event: this endpoint receives webhooks."),
    )
