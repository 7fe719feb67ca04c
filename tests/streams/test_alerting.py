"""Alert evaluation: one notification when an incident fires and one when it resolves, never a storm;
ids that a replay reproduces; state that survives a round trip through JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.alerts import AlertRule, AlertRuleCreate
from streams.alerting import RuleState, Transition, alert_event, anomaly_event, group_label

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def _rule(condition: dict[str, Any] | None = None, **fields: Any) -> AlertRule:
    body = {"name": "High spend", "severity": "critical", **fields,
            "condition": condition or {"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5,
                                       "window": "1h", "group_by": "user"}}
    return AlertRule.create(AlertRuleCreate.model_validate(body), T0, rule_id="rule_test1")


def _run(rule: AlertRule, ticks: Iterable[Mapping[str, float | None]], state: RuleState | None = None,
         start: int = 0) -> list[tuple[int, Transition]]:
    """Evaluate one tick a minute; (minute, transition) for each transition."""
    state = state or RuleState(rule.id)
    return [(start + i, t) for i, values in enumerate(ticks)
            for t in state.evaluate(rule, T0 + timedelta(minutes=start + i), values)]


def _kinds(out: list[tuple[int, Transition]]) -> list[tuple[int, str]]:
    return [(minute, t.kind) for minute, t in out]


def test_fires_once_after_the_condition_held_for_the_for_duration() -> None:
    out = _run(_rule(**{"for": "3m"}), [{"u1": 9}] * 10)
    assert _kinds(out) == [(3, "fired")]
    fired = out[0][1]
    assert fired.started_at == T0 and fired.fired_at == T0 + timedelta(minutes=3) and fired.value == 9


def test_for_zero_fires_on_the_first_tick_and_resolves_once() -> None:
    out = _run(_rule(), [{"u1": 9}, {"u1": 12}, {"u1": 3}, {"u1": 2}, {"u1": 1}])
    assert _kinds(out) == [(0, "fired"), (2, "resolved")]
    resolved = out[1][1]
    assert resolved.alert_id == out[0][1].alert_id and resolved.reason == "recovered"
    assert resolved.value == 3 and resolved.peak == 12 and resolved.resolved_at == T0 + timedelta(minutes=2)


def test_a_flapping_metric_gives_one_fire_and_one_resolve() -> None:
    flapping = [{"u1": 9 if i % 2 == 0 else 4} for i in range(5)] + [{"u1": 4}] * 10  # ±1 around $5 for 5 min
    assert _kinds(_run(_rule(cooldown="5m"), flapping)) == [(0, "fired"), (1, "resolved")]


def test_a_value_flapping_inside_the_for_window_never_fires() -> None:
    flapping = [{"u1": 9 if i % 3 else 4} for i in range(30)]  # never 3 minutes in a row above
    assert _run(_rule(**{"for": "3m"}), flapping) == []


def test_flapping_for_longer_than_the_cooldown_fires_at_most_once_per_cooldown() -> None:
    out = _run(_rule(cooldown="10m"), [{"u1": 9 if i % 2 == 0 else 4} for i in range(60)])
    fires = [m for m, kind in _kinds(out) if kind == "fired"]
    assert fires == [0, 12, 24, 36, 48]  # resolve at 1, 13, ...; the cooldown ends at 11, 23, ... on a low tick
    assert [k for _, k in _kinds(out)] == ["fired", "resolved"] * 5


def test_no_fire_inside_the_cooldown_then_fires_when_it_ends_if_still_breaching() -> None:
    ticks = [{"u1": 9}, {"u1": 1}] + [{"u1": 9}] * 8
    assert _kinds(_run(_rule(cooldown="5m"), ticks)) == [(0, "fired"), (1, "resolved"), (6, "fired")]


def test_ticks_inside_the_cooldown_count_toward_for() -> None:
    ticks = [{"u1": 9}] * 2 + [{"u1": 1}] + [{"u1": 9}] * 10
    out = _run(_rule(**{"for": "1m", "cooldown": "5m"}), ticks)
    assert _kinds(out) == [(1, "fired"), (2, "resolved"), (7, "fired")]  # held since 3, cooldown over at 7
    assert out[2][1].started_at == T0 + timedelta(minutes=3)


def test_each_group_has_its_own_incident() -> None:
    out = _run(_rule(), [{"u1": 9, "u2": 1}, {"u1": 9, "u2": 7}, {"u1": 1, "u2": 7}])
    assert [(m, t.kind, t.group) for m, t in out] == [(0, "fired", "u1"), (1, "fired", "u2"), (2, "resolved", "u1")]


def test_alert_ids_are_deterministic_and_a_replayed_tick_notifies_nothing() -> None:
    rule = _rule()
    ticks = [{"u1": 9}, {"u1": 1}] + [{"u1": 9}] * 6
    first, second = _run(rule, ticks), _run(rule, ticks)
    assert [t.alert_id for _, t in first] == [t.alert_id for _, t in second]
    assert len({t.alert_id for _, t in first}) == 2  # a new incident after the cooldown is a new alert
    state = RuleState(rule.id)
    assert state.evaluate(rule, T0, {"u1": 9}) and state.evaluate(rule, T0, {"u1": 9}) == []
    assert state.evaluate(rule, T0 - timedelta(minutes=1), {"u1": 1}) == []  # an older tick too


def test_a_crash_before_the_state_was_saved_replays_the_same_events() -> None:
    rule, state = _rule(), RuleState(_rule().id)
    state.evaluate(rule, T0, {"u1": 9})
    saved = json.dumps(state.to_dict())
    events = [alert_event(rule, t) for t in state.evaluate(rule, T0 + timedelta(minutes=1), {"u1": 1})]
    replayed = [alert_event(rule, t) for t in RuleState.from_dict(json.loads(saved)).evaluate(
        rule, T0 + timedelta(minutes=1), {"u1": 1})]
    assert replayed == events and events[0].type == "alert.resolved"


def test_state_round_trips_through_json_at_every_tick() -> None:
    rule = _rule(**{"for": "2m", "cooldown": "3m"})
    ticks = [{"u1": v, "u2": 12 - v} for v in (9, 9, 9, 2, 9, 9, 9, 9, 1, 1, 9, 9, 9)]
    kept = _run(rule, ticks)
    state, restored = RuleState(rule.id), []
    for i, values in enumerate(ticks):
        state = RuleState.from_dict(json.loads(json.dumps(state.to_dict())))
        restored += [(i, t) for t in state.evaluate(rule, T0 + timedelta(minutes=i), values)]
    assert restored == kept and len(kept) >= 4


def test_a_firing_group_without_data_resolves_after_one_window() -> None:
    rule = _rule(condition={"kind": "threshold", "metric": "latency_p95", "comparison": ">", "value": 2000,
                            "window": "5m", "group_by": "model"})
    out = _run(rule, [{"gpt-4o": 3000}] + [{}] * 3 + [{"gpt-4o": None}] + [{}] * 5)
    assert _kinds(out) == [(0, "fired"), (5, "resolved")]
    assert out[1][1].reason == "no_data" and out[1][1].value is None


def test_a_gap_shorter_than_the_window_keeps_the_alert_firing() -> None:
    rule = _rule(condition={"kind": "threshold", "metric": "latency_p95", "comparison": ">", "value": 2000,
                            "window": "5m", "group_by": "model"})
    assert _kinds(_run(rule, [{"gpt-4o": 3000}, {}, {}, {"gpt-4o": 3500}, {}, {}, {}, {"gpt-4o": 2500}])) == [(0, "fired")]


def test_a_pending_group_without_data_starts_again() -> None:
    assert _run(_rule(**{"for": "2m"}), [{"u1": 9}, {"u1": 9}, {}, {"u1": 9}, {"u1": 9}, {"u1": float("nan")}]) == []


def test_groups_that_are_ok_are_not_kept_in_the_state() -> None:
    rule, state = _rule(cooldown="2m"), RuleState(_rule().id)
    state.evaluate(rule, T0, {f"u{i}": 1 for i in range(1000)} | {"big": 9})
    assert list(state.groups) == ["big"] and state.firing() == {"big": state.groups["big"].alert_id}
    state.evaluate(rule, T0 + timedelta(minutes=1), {"big": 1})
    state.evaluate(rule, T0 + timedelta(minutes=3), {})
    assert state.groups == {}  # cooled down and quiet: forgotten


def test_a_below_threshold_rule_fires_on_the_low_side_and_keeps_the_lowest_value() -> None:
    rule = _rule(condition={"kind": "threshold", "metric": "requests", "comparison": "<", "value": 10, "window": "5m"})
    out = _run(rule, [{"": 50}, {"": 4}, {"": 2}, {"": 6}, {"": 40}])
    assert _kinds(out) == [(1, "fired"), (4, "resolved")] and out[1][1].peak == 2


def test_disabling_a_rule_resolves_what_fires_and_forgets_the_state() -> None:
    rule, state = _rule(), RuleState("rule_test1")
    state.evaluate(rule, T0, {"u1": 9, "u2": 1})
    off = rule.model_copy(update={"enabled": False})
    resolved = state.evaluate(off, T0 + timedelta(minutes=1), {"u1": 9})
    assert [(t.kind, t.group, t.reason) for t in resolved] == [("resolved", "u1", "rule_disabled")]
    assert state.groups == {} and state.evaluate(off, T0 + timedelta(minutes=2), {"u1": 9}) == []
    assert [t.kind for t in state.evaluate(rule, T0 + timedelta(minutes=3), {"u1": 9})] == ["fired"]


def test_changing_the_condition_resolves_under_the_old_one_and_starts_afresh() -> None:
    rule, state = _rule(), RuleState("rule_test1")
    (fired,) = state.evaluate(rule, T0, {"u1": 9})
    stricter = rule.model_copy(update={"condition": rule.condition.model_copy(update={"value": 8.0})})
    out = state.evaluate(stricter, T0 + timedelta(minutes=1), {"u1": 9})
    assert [(t.kind, t.reason, t.criterion.threshold) for t in out] == [("resolved", "rule_changed", 5), ("fired", None, 8)]
    assert out[0].alert_id == fired.alert_id != out[1].alert_id
    renamed = stricter.model_copy(update={"name": "Renamed", "severity": "info"})
    assert state.evaluate(renamed, T0 + timedelta(minutes=2), {"u1": 9}) == []  # same condition: same incident


def test_deleting_a_rule_resolves_every_firing_group() -> None:
    rule, state = _rule(), RuleState("rule_test1")
    state.evaluate(rule, T0, {"u1": 9, "u2": 9})
    out = state.close_all(T0 + timedelta(minutes=1), "rule_deleted")
    assert [(t.group, t.reason) for t in out] == [("u1", "rule_deleted"), ("u2", "rule_deleted")] and not state.groups


def test_anomaly_rule_fires_on_a_peak_score_and_resolves_when_the_episode_closes() -> None:
    rule = _rule(condition={"kind": "anomaly", "service": "chat-api", "min_score": 5}, **{"for": "1m"})
    key = group_label(service="chat-api", model="gpt-4o", metric="latency_p95_ms")
    out = _run(rule, [{key: 4.5}, {key: 6}, {key: 8}, {key: 8}, {}])
    assert _kinds(out) == [(2, "fired"), (4, "resolved")] and out[1][1].reason == "recovered" and out[1][1].peak == 8
    assert key == "service=chat-api,model=gpt-4o,metric=latency_p95_ms"


def test_absence_rule_fires_after_the_silence_and_resolves_when_spans_return() -> None:
    rule = _rule(condition={"kind": "absence", "service": "chat-api", "minutes": 10})
    silence = [{"": float(s)} for s in (60, 300, 600, 660, 5)]
    out = _run(rule, silence)
    assert _kinds(out) == [(2, "fired"), (4, "resolved")]
    assert alert_event(rule, out[0][1]).data.summary == "[CRITICAL] High spend: no spans for 10m (threshold 10m)"


def test_events_carry_the_transition_with_deterministic_ids_and_readable_summaries() -> None:
    rule = _rule()
    (_, fired), (_, resolved) = _run(rule, [{"u-42": 7.125}, {"u-42": 9}, {"u-42": 1}])
    firing, done = alert_event(rule, fired), alert_event(rule, resolved)
    assert firing.type == "alert.firing" and done.type == "alert.resolved"
    assert firing.id != done.id and firing.id == alert_event(rule, fired).id and "." not in firing.id
    assert firing.timestamp == T0 and done.timestamp == T0 + timedelta(minutes=2)
    assert firing.data.summary == "[CRITICAL] High spend: cost_usd $7.12 (threshold > $5.00 over 1h) for user=u-42"
    assert done.data.summary == "[RESOLVED] High spend: cost_usd $1.00 (threshold > $5.00 over 1h) for user=u-42; fired for 2m"
    assert done.data.model_dump(include={"alert_id", "status", "group_by", "group", "value", "peak", "reason"}) == {
        "alert_id": fired.alert_id, "status": "resolved", "group_by": "user", "group": "u-42", "value": 1.0,
        "peak": 9.0, "reason": "recovered"}


def test_anomaly_detector_events_become_opened_and_closed_events() -> None:
    episode = {"kind": "opened", "episode_id": "ep1", "tenant": "t1", "service": "chat-api", "provider": "openai",
               "model": "gpt-4o", "metric": "error_rate", "direction": "up", "minute": 29_000_000, "start": 29_000_000,
               "end": None, "observed": 0.4, "expected": 0.01, "score": 9.3, "peak_minute": 29_000_000,
               "peak_score": 9.3, "peak_observed": 0.4, "peak_expected": 0.01}
    opened = anomaly_event(episode)
    closed = anomaly_event(episode | {"kind": "closed", "minute": 29_000_010, "end": 29_000_010})
    assert opened is not None and closed is not None and anomaly_event(episode | {"kind": "updated"}) is None
    assert (opened.type, closed.type) == ("anomaly.opened", "anomaly.closed") and opened.id != closed.id
    assert opened.data.started_at == datetime.fromtimestamp(29_000_000 * 60, timezone.utc)
    assert closed.data.ended_at == datetime.fromtimestamp(29_000_010 * 60, timezone.utc)
    assert "service=chat-api,provider=openai,model=gpt-4o" in opened.data.summary


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.sampled_from([0.0, 4.0, 6.0, 9.0])), min_size=1, max_size=80),
       for_m=st.integers(0, 4), cooldown_m=st.integers(0, 6))
def test_any_value_sequence_alternates_fire_and_resolve_within_the_rules(values: list[float | None], for_m: int,
                                                                         cooldown_m: int) -> None:
    rule = _rule(**{"for": f"{for_m}m", "cooldown": f"{cooldown_m}m"},
                 condition={"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "3m"})
    out = _run(rule, [{} if v is None else {"": v} for v in values])
    kinds = [t.kind for _, t in out]
    assert kinds == ["fired", "resolved"] * (len(kinds) // 2) + ["fired"] * (len(kinds) % 2)
    for (m_fire, fire), rest in zip(out[::2], [out[i + 1:i + 2] for i in range(0, len(out), 2)]):
        assert all(v is not None and v > 5 for v in values[m_fire - for_m:m_fire + 1])  # held for `for`
        if rest:
            assert rest[0][1].alert_id == fire.alert_id
    for (m_resolved, _), (m_next, _) in zip(out[1::2], out[2::2]):
        assert m_next - m_resolved >= cooldown_m
