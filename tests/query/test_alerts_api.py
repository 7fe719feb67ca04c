"""GET /api/v1/alerts over the real chDB store: current and past alerts with their values, filters,
cursor pages, tenants apart, and a resolve replacing its firing row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from llmscope.storage import Store
from schemas.alert_events import AlertData, RuleRef
from schemas.alert_rows import alert_row, write_alerts
from tests.conftest import bearer

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)


def alert(i: int, rule: str, resolved: bool) -> AlertData:
    fired = T0 + timedelta(minutes=10 * i)
    return AlertData(
        alert_id=f"alert{i:03d}", status="resolved" if resolved else "firing",
        rule=RuleRef(id=rule, name=rule, kind="threshold", severity="warning"), metric="error_rate",
        comparison=">", threshold=0.1, value=0.05 if resolved else 0.4, peak=0.6, window="5m", group_by=None,
        group=None, started_at=fired, fired_at=fired, resolved_at=fired + timedelta(minutes=5) if resolved else None,
        reason="recovered" if resolved else None, summary=f"alert {i}",
    )


@pytest.fixture(scope="module")
def tenant(store: Store) -> dict[str, str]:
    name = f"alerts-api-{uuid.uuid4().hex[:6]}"
    rows = [alert_row(name, alert(i, "rule_a" if i % 2 else "rule_b", resolved=False)) for i in range(6)]
    write_alerts(store, rows)
    # alerts 0..3 resolve later: a new version of their row, as the evaluator writes it
    write_alerts(store, [alert_row(name, alert(i, "rule_a" if i % 2 else "rule_b", resolved=True)) for i in range(4)])
    return {"name": name} | bearer(store, name, "read")


def headers(tenant: dict[str, str]) -> dict[str, str]:
    return {"authorization": tenant["authorization"]}


WIDE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T00:00:00Z"}


async def test_alerts_list_newest_first_with_their_values_and_one_row_each(api, tenant) -> None:
    r = await api.get("/api/v1/alerts", params=WIDE, headers=headers(tenant))
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [a["alert_id"] for a in data] == [f"alert{i:03d}" for i in range(5, -1, -1)]
    assert [a["status"] for a in data] == ["firing"] * 2 + ["resolved"] * 4
    assert data[-1]["value"] == 0.05 and data[-1]["peak"] == 0.6 and data[-1]["reason"] == "recovered"
    assert data[0]["value"] == 0.4 and data[0]["resolved_at"] is None


@pytest.mark.parametrize(("params", "expected"), [
    ({"status": "firing"}, [5, 4]),
    ({"status": "resolved", "rule_id": "rule_a"}, [3, 1]),
    # [12:31, 12:44): alert 3 (12:30-12:35) and firing 4, 5 (from 12:40, 12:50: only 4 fired before 12:44)
    ({"start": "2026-11-02T12:31:00Z", "end": "2026-11-02T12:44:00Z"}, [4, 3]),
])
async def test_alerts_are_filtered_by_status_rule_and_time(api, tenant, params, expected) -> None:
    r = await api.get("/api/v1/alerts", params=WIDE | params, headers=headers(tenant))
    assert [a["alert_id"] for a in r.json()["data"]] == [f"alert{i:03d}" for i in expected]


async def test_a_firing_alert_is_current_whenever_it_fired(api, tenant) -> None:
    r = await api.get("/api/v1/alerts", params={"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z"},
                      headers=headers(tenant))
    assert [a["alert_id"] for a in r.json()["data"]] == ["alert005", "alert004"]


async def test_the_cursor_pages_through_every_alert_once(api, tenant) -> None:
    seen, cursor = [], None
    while True:
        r = await api.get("/api/v1/alerts", params=WIDE | {"limit": 4} | ({"cursor": cursor} if cursor else {}),
                          headers=headers(tenant))
        seen += [a["alert_id"] for a in r.json()["data"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"alert{i:03d}" for i in range(5, -1, -1)]
    r = await api.get("/api/v1/alerts", params={"cursor": "!!"}, headers=headers(tenant))
    assert r.status_code == 400 and "cursor" in r.json()["error"]["message"]
    assert (await api.get("/api/v1/alerts", params={"status": "open"}, headers=headers(tenant))).status_code == 400


async def test_another_tenant_sees_none_of_them(api, store, tenant) -> None:
    other = bearer(store, f"alerts-api-other-{uuid.uuid4().hex[:6]}", "read")
    r = await api.get("/api/v1/alerts", params=WIDE, headers=other)
    assert r.status_code == 200 and r.json()["data"] == []
    assert (await api.get("/api/v1/alerts", params=WIDE)).status_code == 401
