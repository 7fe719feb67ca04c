"""The alert-rule contract: what a tenant asks to be told about, validated once at the API's edge.

A rule is common settings (name, severity, `for`, cooldown, routing) plus one `condition`, whose
`kind` picks its shape:

- `threshold`: a metric of the analytics API over a sliding `window`, compared with a value,
  optionally per value of one dimension (`group_by`) and over a filtered slice of the spans, e.g.
  "cost_usd per user over the last 1h > 5 for service chat-api";
- `anomaly`: an anomaly episode of a series (service/provider/model, one metric or any) whose peak
  score reaches `min_score`;
- `absence`: a service/provider/model slice that sent no span for `minutes`.

Units are the analytics API's: latencies in milliseconds, cost in USD, error_rate a fraction in
[0, 1], counts per window. Durations are strings of a whole number and one unit ("90s" is not a
whole number of minutes, so write "2m" or "1m"): `window` 1 minute to 7 days, `for` and `cooldown`
0 to 7 days. Every validation error is a ValueError with a sentence a user can act on; the API
turns a pydantic ValidationError into a 400 with `validation_message(exc)`.

Rule ids are made by the server (`new_rule_id`), never by clients: the evaluator's alert ids are
hashes of (rule id, group, fire time), so rule ids must be unique for all time.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

METRICS = ("requests", "errors", "error_rate", "latency_p50", "latency_p95", "latency_p99", "cost_usd",
           "input_tokens", "output_tokens", "tokens")
# The analytics API's dimensions (query/metrics.py DIMENSIONS keys).
DIMENSIONS = ("service", "provider", "model", "operation", "prompt", "user", "session")
FILTERS = ("service", "provider", "model", "operation", "status", "user_id", "session_id", "prompt_name")
COMPARISONS = (">", ">=", "<", "<=")
SEVERITIES = ("info", "warning", "critical")
# The metrics the anomaly detector scores (streams/stages/anomaly METRICS names).
ANOMALY_METRICS = ("requests", "error_rate", "latency_p95_ms", "cost_usd", "tokens_per_request")
# Absence is watched per series of the anomaly detector's key.
ABSENCE_DIMENSIONS = ("service", "provider", "model")

MINUTE, DAY = 60, 86_400
MAX_DURATION = 7 * DAY
_DURATION = re.compile(r"^(\d{1,7})([smhd])$")
_UNITS = {"s": 1, "m": MINUTE, "h": 3600, "d": DAY}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(values)


def parse_duration(text: str) -> int:
    """'5m' -> 300. A whole number of minutes (or 0), at most 7 days; ValueError says what is wrong."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if text == "0":
        return 0
    if match is None:
        raise ValueError(f"{text!r} is not a duration: write a whole number and a unit, like '5m', '1h' or '1d'")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds % MINUTE:
        raise ValueError(f"{text!r} is not a whole number of minutes (rules are evaluated once a minute)")
    if seconds > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than 7 days")
    return seconds


def _duration(minimum: int) -> Any:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a duration: write a string like '5m', '1h' or '1d'")
        seconds = parse_duration(value)
        if seconds < minimum:
            raise ValueError(f"{value!r} is shorter than {minimum // MINUTE} minute{'s' if minimum > MINUTE else ''}")
        return value.strip()

    return BeforeValidator(check)


def _member(values: tuple[str, ...], what: str) -> Any:
    def check(value: object) -> object:
        if isinstance(value, str) and value not in values:
            raise ValueError(f"unknown {what} {value!r}: use one of {_one_of(values)}")
        return value

    return BeforeValidator(check)


Window = Annotated[str, _duration(MINUTE)]
Duration = Annotated[str, _duration(0)]
Metric = Annotated[Literal["requests", "errors", "error_rate", "latency_p50", "latency_p95", "latency_p99",
                           "cost_usd", "input_tokens", "output_tokens", "tokens"], _member(METRICS, "metric")]
Dimension = Annotated[Literal["service", "provider", "model", "operation", "prompt", "user", "session"],
                      _member(DIMENSIONS, "group_by dimension")]
Comparison = Annotated[Literal[">", ">=", "<", "<="], _member(COMPARISONS, "comparison")]
Severity = Annotated[Literal["info", "warning", "critical"], _member(SEVERITIES, "severity")]
AnomalyMetric = Annotated[Literal["requests", "error_rate", "latency_p95_ms", "cost_usd", "tokens_per_request"],
                          _member(ANOMALY_METRICS, "anomaly metric")]
AbsenceDimension = Annotated[Literal["service", "provider", "model"], _member(ABSENCE_DIMENSIONS, "group_by dimension")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=r"^[^\x00-\x1f\x7f]*$")]
Description = Annotated[str, StringConstraints(max_length=2000)]
EndpointId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    """Unknown fields are refused by name, so a typo ('treshold') is a 400, not a silently ignored key."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {f.alias or name for name, f in cls.model_fields.items()} | set(cls.model_fields)
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                fields = sorted(f.alias or n for n, f in cls.model_fields.items())
                raise ValueError(f"unknown field {unknown[0]!r}: {cls._what()} takes {_one_of(tuple(fields))}")
        return data

    @classmethod
    def _what(cls) -> str:
        return "this object"


class RuleFilters(_Strict):
    """Which spans a threshold rule counts; every given filter must match."""

    service: Label | None = None
    provider: Label | None = None
    model: Label | None = None
    operation: Label | None = None
    status: Annotated[Literal["ok", "error", "unset"], _member(("ok", "error", "unset"), "status")] | None = None
    user_id: Label | None = None
    session_id: Label | None = None
    prompt_name: Label | None = None

    @classmethod
    def _what(cls) -> str:
        return "filters"

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ThresholdCondition(_Strict):
    kind: Literal["threshold"] = "threshold"
    metric: Metric
    comparison: Comparison
    value: float
    window: Window
    group_by: Dimension | None = None
    filters: RuleFilters = RuleFilters()

    @classmethod
    def _what(cls) -> str:
        return "a threshold condition"

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite number >= 0 (every metric is non-negative)")
        return value

    @model_validator(mode="after")
    def _fraction(self) -> ThresholdCondition:
        if self.metric == "error_rate" and self.value > 1:
            raise ValueError(f"error_rate is a fraction between 0 and 1 (5 % is 0.05), not {self.value:g}")
        if self.comparison == "<" and self.value == 0:
            raise ValueError("'< 0' never holds: every metric is >= 0")
        return self

    @property
    def window_seconds(self) -> int:
        return parse_duration(self.window)


class AnomalyCondition(_Strict):
    """Fires while an anomaly episode of a matching series is open with a peak score >= min_score."""

    kind: Literal["anomaly"] = "anomaly"
    service: Label | None = None
    provider: Label | None = None
    model: Label | None = None
    metric: AnomalyMetric | None = None  # None: any metric the detector scores
    min_score: float = Field(4.0, description="Robust z-score the episode's peak must reach.")

    @classmethod
    def _what(cls) -> str:
        return "an anomaly condition"

    @field_validator("min_score")
    @classmethod
    def _score(cls, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value <= 1000:
            raise ValueError("must be a number from 0 to 1000 (anomaly scores are in robust standard deviations)")
        return value


class AbsenceCondition(_Strict):
    """Fires when a watched slice has sent no span for `minutes`."""

    kind: Literal["absence"] = "absence"
    service: Label | None = None
    provider: Label | None = None
    model: Label | None = None
    group_by: AbsenceDimension | None = None
    minutes: int

    @classmethod
    def _what(cls) -> str:
        return "an absence condition"

    @field_validator("minutes")
    @classmethod
    def _minutes(cls, value: int) -> int:
        if not 1 <= value <= MAX_DURATION // MINUTE:
            raise ValueError(f"must be a whole number of minutes from 1 to {MAX_DURATION // MINUTE} (7 days)")
        return value


Condition = Annotated[ThresholdCondition | AnomalyCondition | AbsenceCondition, Field(discriminator="kind")]
KINDS = ("threshold", "anomaly", "absence")


def _condition_kind(value: object) -> object:
    if isinstance(value, dict) and "kind" not in value:
        raise ValueError(f"a condition needs a kind: one of {_one_of(KINDS)}")
    if isinstance(value, dict) and value.get("kind") not in KINDS:
        raise ValueError(f"unknown condition kind {value.get('kind')!r}: use one of {_one_of(KINDS)}")
    return value


class _RuleFields(_Strict):
    name: Name
    description: Description = ""
    enabled: bool = True
    severity: Severity = "warning"
    for_: Duration = Field("0m", alias="for", description="How long the condition must hold before the alert fires.")
    cooldown: Duration = Field("5m", description="Least time between a resolve and the next fire of the same group.")
    condition: Annotated[Condition, BeforeValidator(_condition_kind)]
    webhook_ids: list[EndpointId] = Field(
        default_factory=list, max_length=20,
        description="Endpoints to notify; empty = every enabled endpoint subscribed to the event type.")

    @classmethod
    def _what(cls) -> str:
        return "a rule"

    @property
    def for_seconds(self) -> int:
        return parse_duration(self.for_)

    @property
    def cooldown_seconds(self) -> int:
        return parse_duration(self.cooldown)


class AlertRuleCreate(_RuleFields):
    """POST /api/v1/alerts/rules body."""


class AlertRuleUpdate(_Strict):
    """PATCH body: given fields replace the rule's; a given `condition` replaces it whole."""

    name: Name | None = None
    description: Description | None = None
    enabled: bool | None = None
    severity: Severity | None = None
    for_: Duration | None = Field(None, alias="for")
    cooldown: Duration | None = None
    condition: Annotated[Condition, BeforeValidator(_condition_kind)] | None = None
    webhook_ids: list[EndpointId] | None = Field(None, max_length=20)

    @classmethod
    def _what(cls) -> str:
        return "a rule update"

    def apply(self, rule: AlertRule, now: datetime) -> AlertRule:
        """The updated rule, validated again as a whole (ValidationError on a bad combination)."""
        changes = self.model_dump(exclude_unset=True, by_alias=True)
        merged = rule.model_dump(by_alias=True) | changes | {"updated_at": now}
        return AlertRule.model_validate(merged)


class AlertRule(_RuleFields):
    """A stored rule, as the API returns it and the evaluator reads it."""

    id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(cls, spec: AlertRuleCreate, now: datetime, rule_id: str | None = None) -> AlertRule:
        return cls.model_validate(spec.model_dump(by_alias=True) | {
            "id": rule_id or new_rule_id(), "created_at": now, "updated_at": now})

    def condition_fingerprint(self) -> str:
        """Changes when what the rule watches changes (not its name, severity or routing): the
        evaluator starts the rule's groups afresh then."""
        text = json.dumps(self.condition.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_rule_id() -> str:
    """Unique for all time: 96 random bits. No '.', so it is safe inside webhook ids."""
    return "rule_" + secrets.token_hex(12)


def validation_message(exc: ValidationError) -> str:
    """One line for a 400: 'condition.metric: unknown metric 'cost'; use one of …' for each error."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"] if not (isinstance(p, str) and p in KINDS))
        msg = error["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
