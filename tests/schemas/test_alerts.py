"""The alert-rule, event and webhook-endpoint contracts: what is accepted, and what a 400 says."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.alert_events import event_json, parse_event, webhook_test_event
from schemas.alerts import AlertRule, AlertRuleCreate, AlertRuleUpdate, parse_duration, validation_message
from schemas.webhooks import StoredEndpoint, WebhookEndpointCreate, new_secret, secret_key

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
COST_PER_USER = {
    "name": "Spend per user", "severity": "critical",
    "condition": {"kind": "threshold", "metric": "cost_usd", "comparison": ">", "value": 5, "window": "1h",
                  "group_by": "user", "filters": {"service": "chat-api"}},
}


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        AlertRuleCreate.model_validate(body)
    return validation_message(info.value)


def _condition(**changes: Any) -> dict[str, Any]:
    return {**COST_PER_USER, "condition": {**COST_PER_USER["condition"], **changes}}


def test_cost_per_user_over_an_hour_is_a_threshold_rule_with_defaults() -> None:
    rule = AlertRuleCreate.model_validate(COST_PER_USER)
    assert rule.condition.kind == "threshold" and rule.condition.window_seconds == 3600
    assert rule.for_seconds == 0 and rule.cooldown_seconds == 300 and rule.enabled and rule.webhook_ids == []
    assert rule.condition.filters.given() == {"service": "chat-api"}
    assert rule.model_dump(by_alias=True)["for"] == "0m"  # `for` on the wire, for_ in Python


@pytest.mark.parametrize(("changes", "message"), [
    ({"metric": "cost"}, "condition.metric: unknown metric 'cost': use one of requests, errors, error_rate"),
    ({"window": "an hour"}, "condition.window: 'an hour' is not a duration: write a whole number and a unit, like '5m'"),
    ({"window": "90s"}, "condition.window: '90s' is not a whole number of minutes"),
    ({"window": "0m"}, "condition.window: '0m' is shorter than 1 minute"),
    ({"window": "8d"}, "condition.window: '8d' is longer than 7 days"),
    ({"window": 60}, "condition.window: 60 is not a duration: write a string like '5m'"),
    ({"group_by": "region"}, "condition.group_by: unknown group_by dimension 'region': use one of service, provider, model"),
    ({"comparison": "=="}, "condition.comparison: unknown comparison '==': use one of >, >=, <, <="),
    ({"filters": {"region": "eu"}}, "condition.filters: unknown field 'region': filters takes model, operation"),
    ({"filters": {"status": "failed"}}, "condition.filters.status: unknown status 'failed': use one of ok, error, unset"),
    ({"metric": "error_rate", "value": 5}, "condition: error_rate is a fraction between 0 and 1 (5 % is 0.05), not 5"),
    ({"value": -1}, "condition.value: must be a finite number >= 0"),
    ({"comparison": "<", "value": 0}, "condition: '< 0' never holds"),
    ({"treshold": 5}, "condition: unknown field 'treshold': a threshold condition takes comparison"),
    ({"kind": "percentile"}, "condition: unknown condition kind 'percentile': use one of threshold, anomaly, absence"),
])
def test_a_bad_threshold_condition_gets_a_message_naming_field_and_fix(changes: dict[str, Any], message: str) -> None:
    assert message in _error(_condition(**changes))


@pytest.mark.parametrize(("body", "message"), [
    ({**COST_PER_USER, "for": "5"}, "for: '5' is not a duration"),
    ({**COST_PER_USER, "cooldown": "2w"}, "cooldown: '2w' is not a duration"),
    ({**COST_PER_USER, "severity": "fatal"}, "severity: unknown severity 'fatal': use one of info, warning, critical"),
    ({**COST_PER_USER, "name": "  "}, "name: String should have at least 1 character"),
    ({**COST_PER_USER, "id": "mine"}, "unknown field 'id': a rule takes"),
    ({"name": "x", "condition": {"metric": "errors"}}, "condition: a condition needs a kind: one of threshold"),
    ({"name": "x", "condition": {"kind": "absence", "minutes": 0}}, "condition.minutes: must be a whole number of minutes from 1 to 10080"),
    ({"name": "x", "condition": {"kind": "anomaly", "metric": "latency"}}, "condition.metric: unknown anomaly metric 'latency'"),
    ({"name": "x", "condition": {"kind": "anomaly", "min_score": -1}}, "condition.min_score: must be a number from 0 to 1000"),
    ({"name": "x", "condition": {"kind": "absence", "minutes": 5, "group_by": "user"}}, "condition.group_by: unknown group_by dimension 'user': use one of service, provider, model"),
])
def test_a_bad_rule_gets_a_message_naming_field_and_fix(body: dict[str, Any], message: str) -> None:
    assert message in _error(body)


def test_every_error_of_a_rule_is_reported_at_once() -> None:
    message = _error({"name": "x", "condition": {"kind": "threshold", "metric": "errors"}})
    assert message == "condition.comparison: Field required; condition.value: Field required; condition.window: Field required"


def test_durations_are_whole_minutes_up_to_seven_days() -> None:
    assert [parse_duration(d) for d in ("0", "0m", "1m", "120s", "5m", "1h", "1d", "7d")] == [
        0, 0, 60, 120, 300, 3600, 86400, 604800]


def test_anomaly_and_absence_rules_are_accepted() -> None:
    anomaly = AlertRuleCreate.model_validate({"name": "a", "condition": {"kind": "anomaly", "service": "chat-api"}})
    absence = AlertRuleCreate.model_validate({"name": "b", "condition": {"kind": "absence", "service": "chat-api",
                                                                        "group_by": "model", "minutes": 10}})
    assert anomaly.condition.kind == "anomaly" and anomaly.condition.min_score == 4.0
    assert absence.condition.kind == "absence" and absence.condition.minutes == 10


def test_rule_ids_are_made_by_the_server_and_unique() -> None:
    spec = AlertRuleCreate.model_validate(COST_PER_USER)
    a, b = AlertRule.create(spec, NOW), AlertRule.create(spec, NOW)
    assert a.id != b.id and a.id.startswith("rule_") and "." not in a.id
    assert a.created_at == a.updated_at == NOW


def test_an_update_replaces_given_fields_and_revalidates_the_whole_rule() -> None:
    rule = AlertRule.create(AlertRuleCreate.model_validate(COST_PER_USER), NOW)
    later = NOW + timedelta(hours=1)
    updated = AlertRuleUpdate.model_validate({"for": "10m", "enabled": False}).apply(rule, later)
    assert updated.for_seconds == 600 and not updated.enabled and updated.id == rule.id
    assert updated.updated_at == later and updated.created_at == NOW and updated.condition == rule.condition
    assert updated.condition_fingerprint() == rule.condition_fingerprint()  # same condition: state kept
    changed = AlertRuleUpdate.model_validate({"condition": {**COST_PER_USER["condition"], "value": 10}}).apply(rule, later)
    assert changed.condition_fingerprint() != rule.condition_fingerprint()
    with pytest.raises(ValidationError) as info:
        AlertRuleUpdate.model_validate({"condition": {"kind": "threshold", "metric": "nope"}})
    assert "unknown metric 'nope'" in validation_message(info.value)


def test_events_round_trip_through_their_json() -> None:
    event = webhook_test_event("whep_1", NOW)
    body = event_json(event)
    assert body.startswith(b'{"version":1,"type":"webhook.test","id":"evt_test_')
    assert parse_event(body) == event
    assert webhook_test_event("whep_1", NOW).id != event.id  # each test request is a new event


def test_webhook_secrets_are_standard_webhooks_secrets_of_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32 and secret != new_secret()
    assert secret_key(secret) == base64.b64decode(secret[6:])
    for bad in ("abc", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            secret_key(bad)


def test_rotation_keeps_the_old_secret_for_its_grace_period() -> None:
    endpoint = StoredEndpoint.create(WebhookEndpointCreate(url="https://hooks.example.com/x"), NOW)
    rotated = endpoint.rotate(NOW, grace=timedelta(hours=1))
    assert rotated.signing_secrets(NOW) == [rotated.secret, endpoint.secret] and rotated.secret != endpoint.secret
    assert rotated.signing_secrets(NOW + timedelta(hours=1)) == [rotated.secret]
    assert "secret" not in rotated.public().model_dump() and rotated.public().id == endpoint.id


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/x", "scheme must be http or https, not 'ftp'"),
    ("file:///etc/passwd", "scheme must be http or https, not 'file'"),
    ("https://user:pw@example.com/", "must not contain credentials"),
    ("https://example.com\\@evil/", "must not contain spaces, control characters or backslashes"),
    ("https:///path", "has no host"),
    ("https://example.com:0/", "port is not a number from 1 to 65535"),
    ("http://[::1/", "cannot be parsed"),
    ("http://%31%32%37.0.0.1/", "no percent-encoding"),
    ("http://[fe80::1%25eth0]/", "no zone"),
])
def test_an_endpoint_url_with_a_bad_shape_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        WebhookEndpointCreate(url=url)
    assert message in validation_message(info.value)


def test_an_endpoint_receives_the_types_it_subscribed_to_from_rules_that_name_it_or_none() -> None:
    endpoint = StoredEndpoint.create(WebhookEndpointCreate(url="https://hooks.example.com/x",
                                                           event_types=["alert.firing", "alert.resolved"]), NOW)
    assert endpoint.receives("alert.firing") and endpoint.receives("alert.resolved", [endpoint.id])
    assert not endpoint.receives("anomaly.opened") and not endpoint.receives("alert.firing", ["whep_other"])
    assert not endpoint.model_copy(update={"enabled": False}).receives("alert.firing")
