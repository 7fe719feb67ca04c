"""Alert evaluation, pure: one rule, the state of its groups and one tick's values in; transitions
(an alert fired, an alert resolved) out. No I/O, no clock: the caller says what time it is.

How the worker drives it (a leader timer once a minute per enabled rule; state in a table keyed by
rule id)::

    now = floor_to_minute(clock)                    # ticks on whole minutes: see "Ids" below
    state = RuleState.from_dict(saved) if saved else RuleState(rule.id)
    values = read_values(rule, now)                 # re-reads the whole window on every tick
    transitions = state.evaluate(rule, now, values)
    outbox.insert([alert_event(rule, t) for t in transitions])   # keyed by event id
    save(rule.id, state.to_dict())                  # after the outbox insert, never before
    # a deleted rule: outbox.insert([alert_event(rule, t) for t in state.close_all(now, "rule_deleted")])

Ids: alert id = hash of (rule id, group, fire time), event id = hash of (alert id, event type).
A crash between the insert and the save makes the next run replay the tick from the old state,
which makes the same transitions with the same ids, which the outbox already holds. A tick at or
before the last one evaluated returns nothing, so a tick replayed against the new state is a no-op
too. Tick on whole minutes, so a tick replayed by another worker after a failover has the same
time, hence the same ids, as the one it replaces.

Values (a dict group -> number; None or missing = no data)
---------------------------------------------------------
- threshold: the metric over [now - window, now) per group ("" when the rule has no group_by),
  in the analytics API's units. Late data is the caller's job and comes for free: re-reading the
  whole window each tick, a span that arrived late is counted by the next tick that covers it.
  Pass 0 for counters of an ungrouped rule with no spans; pass None where the metric is undefined
  (latency or error_rate without requests).
- anomaly: the peak score of each matching series' open episode (`group_label` of the series and
  metric); missing = no open episode. The peak, not the latest score: it only grows while the
  episode is open, so the alert does not flap with the minute's score; it resolves when the
  detector closes the episode.
- absence: seconds since each watched series' last span; missing = the caller no longer watches
  the series. The caller decides which series it watches (e.g. those with spans in 7 days).

States per (rule, group)
------------------------
    ok --holds--> pending --held for `for`--> firing --stops holding--> resolved --cooldown--> ok

- `for` 0 fires on the first tick the condition holds. Pending needs the condition on every tick;
  one tick without it (or without data) starts it again.
- Firing resolves on the first tick the condition does not hold; one notification each way.
- After a resolve the group cannot fire again until `cooldown` has passed; ticks inside the
  cooldown where the condition holds count toward `for`, so the group fires at the first tick with
  both the cooldown over and the condition held for `for`. A value flapping around the threshold
  therefore makes at most one fire and one resolve per cooldown (plus `for`), never a storm.
- No data: threshold rules keep a firing group firing while its data is missing for less than a
  window (a lagging rollup or an empty read must not resolve it and fire it again a minute
  later), and resolve it with reason "no_data" once it has had no data for a whole window since
  its last value (a user who stopped calling must not fire forever). A pending group without data
  goes back to ok. For anomaly and absence rules a missing group means the condition does not hold.
- A disabled rule resolves its firing groups ("rule_disabled") and forgets its state; a changed
  condition (`AlertRule.condition_fingerprint`) resolves them ("rule_changed") and starts afresh
  under the new condition, which may fire again at once with a new alert id.
- Groups in state ok are not stored, so state grows with the groups that are pending, firing or
  cooling down, not with every user a rule has ever seen.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from schemas.alert_events import (
    AlertData,
    AlertFiringEvent,
    AlertResolvedEvent,
    AnomalyClosedEvent,
    AnomalyData,
    AnomalyOpenedEvent,
    Comparison,
    ResolveReason,
    RuleRef,
    event_id,
)
from schemas.alerts import AbsenceCondition, AlertRule, AnomalyCondition, ThresholdCondition

Status = Literal["ok", "pending", "firing", "resolved"]
STATE_VERSION = 1
_OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                   "<=": operator.le}


def alert_id(rule_id: str, group: str, fired_at: int) -> str:
    return hashlib.sha256(f"{rule_id}\x1f{group}\x1f{fired_at}".encode()).hexdigest()[:32]


def group_label(**labels: str | None) -> str:
    """A readable group key from labels, in the order given: 'service=chat-api,metric=cost_usd'."""
    return ",".join(f"{k}={v}" for k, v in labels.items() if v is not None)


@dataclass(frozen=True, slots=True)
class Criterion:
    """What a rule compares, captured in the state so a resolve after an edit describes what fired."""

    comparison: Comparison
    threshold: float
    metric: str | None = None
    window: str | None = None
    group_by: str | None = None
    no_data_hold: int | None = None  # seconds a firing group may lack data; None: no data = not holding

    @classmethod
    def of(cls, rule: AlertRule) -> Criterion:
        c = rule.condition
        if isinstance(c, ThresholdCondition):
            return cls(c.comparison, c.value, c.metric, c.window, c.group_by, c.window_seconds)
        if isinstance(c, AnomalyCondition):
            return cls(">=", c.min_score, c.metric)
        assert isinstance(c, AbsenceCondition)
        return cls(">=", float(c.minutes * 60), None, f"{c.minutes}m", c.group_by)

    def holds(self, value: float | None) -> bool:
        return value is not None and _OPS[self.comparison](value, self.threshold)

    def worse(self, a: float | None, b: float) -> float:
        if a is None:
            return b
        return max(a, b) if self.comparison in (">", ">=") else min(a, b)


@dataclass(slots=True)
class GroupState:
    status: Status = "ok"
    since: int | None = None  # first tick of the current run of ticks where the condition held
    fired_at: int | None = None
    alert_id: str | None = None
    resolved_at: int | None = None
    last_seen: int | None = None  # last tick with a value: the no-data clock
    peak: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Literal["fired", "resolved"]
    alert_id: str
    rule_id: str
    group: str
    value: float | None
    peak: float | None
    criterion: Criterion
    started_at: datetime
    fired_at: datetime
    resolved_at: datetime | None = None
    reason: ResolveReason | None = None


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _seconds(now: datetime) -> int:
    return int((now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp())


@dataclass
class RuleState:
    """The evaluation state of one rule: its groups that are not ok, and what it last compared."""

    rule_id: str
    fingerprint: str | None = None
    criterion: Criterion | None = None
    last_tick: int = 0
    groups: dict[str, GroupState] = field(default_factory=dict)

    def evaluate(self, rule: AlertRule, now: datetime, values: Mapping[str, float | None]) -> list[Transition]:
        """One tick: the transitions it causes, in group order. A tick not after the last is ignored."""
        if rule.id != self.rule_id:
            raise ValueError(f"state of rule {self.rule_id} evaluated with rule {rule.id}")
        t = _seconds(now)
        if t <= self.last_tick:
            return []
        self.last_tick = t
        if not rule.enabled:
            return self._close_all(t, "rule_disabled")
        out: list[Transition] = []
        fingerprint = rule.condition_fingerprint()
        if fingerprint != self.fingerprint:
            out += self._close_all(t, "rule_changed")
            self.fingerprint, self.criterion = fingerprint, Criterion.of(rule)
        assert self.criterion is not None
        for group in sorted(set(self.groups) | set(values)):
            raw = values.get(group)
            value = float(raw) if raw is not None and math.isfinite(raw) else None
            state = self.groups.get(group) or GroupState()
            out += self._step(rule, group, state, t, value, self.criterion)
            if state.status == "ok":
                self.groups.pop(group, None)
            else:
                self.groups[group] = state
        return out

    def close_all(self, now: datetime, reason: ResolveReason) -> list[Transition]:
        """Resolve every firing group and forget the state (the rule was deleted or disabled)."""
        return self._close_all(_seconds(now), reason)

    def firing(self) -> dict[str, str]:
        """group -> alert id of the groups firing now."""
        return {g: s.alert_id for g, s in self.groups.items() if s.status == "firing" and s.alert_id}

    def _close_all(self, t: int, reason: ResolveReason) -> list[Transition]:
        out = [self._resolve(g, s, t, None, reason) for g, s in sorted(self.groups.items()) if s.status == "firing"]
        self.groups.clear()
        self.fingerprint = self.criterion = None
        return out

    def _step(self, rule: AlertRule, group: str, s: GroupState, t: int, value: float | None,
              crit: Criterion) -> list[Transition]:
        holds = crit.holds(value)
        if value is not None:
            s.last_seen = t
        if s.status == "firing":
            if holds:
                assert value is not None
                s.peak = crit.worse(s.peak, value)
                return []
            if value is not None:
                return [self._resolve(group, s, t, value, "recovered")]
            if crit.no_data_hold is None:
                return [self._resolve(group, s, t, None, "recovered")]
            if t - (s.last_seen or t) < crit.no_data_hold:
                return []
            return [self._resolve(group, s, t, None, "no_data")]
        if s.status == "resolved" and s.resolved_at is not None and t - s.resolved_at < rule.cooldown_seconds:
            s.since = (t if s.since is None else s.since) if holds else None
            return []
        if not holds:
            s.status, s.since = "ok", None
            return []
        if s.since is None:
            s.since = t
        if t - s.since < rule.for_seconds:
            s.status = "pending"
            return []
        assert value is not None
        s.status, s.fired_at, s.alert_id, s.peak = "firing", t, alert_id(self.rule_id, group, t), value
        return [Transition("fired", s.alert_id, self.rule_id, group, value, value, crit, _time(s.since), _time(t))]

    def _resolve(self, group: str, s: GroupState, t: int, value: float | None, reason: ResolveReason) -> Transition:
        assert s.alert_id is not None and s.fired_at is not None and self.criterion is not None
        out = Transition("resolved", s.alert_id, self.rule_id, group, value, s.peak, self.criterion,
                         _time(s.since if s.since is not None else s.fired_at), _time(s.fired_at), _time(t), reason)
        s.status, s.resolved_at, s.since, s.fired_at, s.alert_id, s.peak = "resolved", t, None, None, None, None
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; `from_dict` reads it back (store it as JSON text)."""
        return {
            "version": STATE_VERSION, "rule_id": self.rule_id, "fingerprint": self.fingerprint,
            "criterion": asdict(self.criterion) if self.criterion else None, "last_tick": self.last_tick,
            "groups": {g: asdict(s) for g, s in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown alert state version {data.get('version')!r}")
        crit = data["criterion"]
        return cls(data["rule_id"], data["fingerprint"], Criterion(**crit) if crit else None, int(data["last_tick"]),
                   {g: GroupState(**s) for g, s in data["groups"].items()})


def _number(metric: str | None, value: float) -> str:
    if metric == "cost_usd":
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4g}"
    if metric == "error_rate":
        return f"{value * 100:.1f}%"
    if metric and metric.startswith("latency"):
        return f"{value:,.0f} ms"
    if metric is None or metric in ("requests", "errors", "input_tokens", "output_tokens", "tokens"):
        return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"
    return f"{value:.3g}"


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _summary(rule: AlertRule, t: Transition) -> str:
    crit = t.criterion
    where = f" for {crit.group_by}={t.group}" if crit.group_by else (f" for {t.group}" if t.group else "")
    if rule.condition.kind == "threshold":
        value = f"{crit.metric} {_number(crit.metric, t.value)}" if t.value is not None else f"{crit.metric} no data"
        what = f"{value} (threshold {crit.comparison} {_number(crit.metric, crit.threshold)} over {crit.window}){where}"
    elif rule.condition.kind == "anomaly":
        score = "" if t.value is None else f" score {t.value:.1f}"
        what = f"anomaly{score} (threshold {crit.threshold:g}){where}"
    else:
        silent = "" if t.value is None else f" for {_minutes(t.value)}"
        what = f"no spans{silent} (threshold {crit.window}){where}"
    if t.kind == "fired":
        return f"[{rule.severity.upper()}] {rule.name}: {what}"
    assert t.resolved_at is not None
    lasted = _minutes((t.resolved_at - t.fired_at).total_seconds())
    because = {"recovered": "", "no_data": ", no data for a window", "rule_disabled": ", rule disabled",
               "rule_changed": ", rule changed", "rule_deleted": ", rule deleted"}[t.reason or "recovered"]
    return f"[RESOLVED] {rule.name}: {what}; fired for {lasted}{because}"


def alert_event(rule: AlertRule, t: Transition) -> AlertFiringEvent | AlertResolvedEvent:
    """The webhook event of a transition; its id is deterministic (alert id and type)."""
    data = AlertData(
        alert_id=t.alert_id, status="firing" if t.kind == "fired" else "resolved",
        rule=RuleRef(id=rule.id, name=rule.name, kind=rule.condition.kind, severity=rule.severity,
                     description=rule.description),
        metric=t.criterion.metric, comparison=t.criterion.comparison,
        threshold=t.criterion.threshold, value=t.value, peak=t.peak, window=t.criterion.window,
        group_by=t.criterion.group_by, group=t.group or None, started_at=t.started_at, fired_at=t.fired_at,
        resolved_at=t.resolved_at, reason=t.reason, summary=_summary(rule, t),
    )
    if t.kind == "fired":
        return AlertFiringEvent(id=event_id(t.alert_id, "alert.firing"), timestamp=t.fired_at, data=data)
    assert t.resolved_at is not None
    return AlertResolvedEvent(id=event_id(t.alert_id, "alert.resolved"), timestamp=t.resolved_at, data=data)


def anomaly_event(episode: Mapping[str, Any]) -> AnomalyOpenedEvent | AnomalyClosedEvent | None:
    """The webhook event of an anomaly detector's event (`AnomalyEvent.to_dict()`: times in epoch
    minutes, kind opened/updated/closed); None for updates, which are not sent."""
    kind = episode["kind"]
    if kind not in ("opened", "closed"):
        return None
    series = group_label(service=episode.get("service"), provider=episode.get("provider"),
                         model=episode.get("model")) or "all traffic"
    metric, score = episode["metric"], episode.get("score")
    if kind == "opened":
        summary = (f"Anomaly: {metric} {episode['direction']} for {series}: {episode.get('observed')!s} "
                   f"vs expected {episode.get('expected')!s} (score {score if score is None else round(score, 1)})")
    else:
        summary = f"Anomaly over: {metric} for {series} (peak score {round(episode['peak_score'], 1)})"
    end = episode.get("end")
    data = AnomalyData(
        episode_id=episode["episode_id"], service=episode.get("service"), provider=episode.get("provider"),
        model=episode.get("model"), metric=metric, direction=episode["direction"],
        started_at=_time(episode["start"] * 60), ended_at=None if end is None else _time(end * 60),
        observed=episode.get("observed"), expected=episode.get("expected"), score=score,
        peak_score=episode["peak_score"], peak_observed=episode["peak_observed"],
        peak_expected=episode["peak_expected"], summary=summary,
    )
    when = _time(episode["minute"] * 60 + 60)  # the judged minute's end: when the event became known
    if kind == "opened":
        return AnomalyOpenedEvent(id=event_id(episode["episode_id"], "anomaly.opened"), timestamp=when, data=data)
    return AnomalyClosedEvent(id=event_id(episode["episode_id"], "anomaly.closed"), timestamp=when, data=data)
