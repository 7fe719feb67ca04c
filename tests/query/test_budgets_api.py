"""Budgets and usage through the query API over the session's chDB: CRUD and every refusal as a 4xx,
another tenant's budget as a 404, spend exact to the last decimal against seeded spans (rollups for
tenant and model scopes, spans for user and tag scopes), the status flipping, its cache, and the
SDK's helper over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from llmscope.auth import KeyResolver
from llmscope.batched_writer import BatchedWriter
from llmscope.broker import free_port
from llmscope.http import make_server
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app
from schemas.budgets import Budget
from streams.compaction import compact
from tests.conftest import bearer
from tests.schemas.test_rollup import make_span
from tests.streams.test_compaction import store_spans
from tests.waiting import eventually

_ids = iter(range(7 * 10**9, 8 * 10**9))
STATUS_TTL = 2.0


@pytest.fixture(scope="module")
async def app_and_client(settings: Settings, store: Store) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    s = settings.model_copy(update={"budget_status_cache_seconds": STATUS_TTL})
    app = create_query_app(s, store, KeyResolver(store, 30.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as client:
        yield app, client


@pytest.fixture
def api(app_and_client: tuple[object, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


def tenant() -> str:
    return f"budget-{uuid.uuid4().hex[:8]}"


def seed(store: Store, t: str, at: datetime, cost: str, **kw: object) -> Decimal:
    """One stored span (rollups recomputed) at `at` costing `cost`; returns the cost."""
    store_spans(store, [make_span(t, next(_ids), int(at.timestamp() * 1e9), 10**8, cost_usd=Decimal(cost), **kw)])
    # Hours another test's compaction already closed are folded again, as the compactor does with
    # late spans (a lateness this large never moves the watermarks themselves).
    compact(store, datetime.now(timezone.utc), timedelta(days=3650))
    return Decimal(cost)


def recent() -> datetime:
    """A minute ago, but in this month (spend is per calendar month)."""
    now = datetime.now(timezone.utc)
    return max(now - timedelta(minutes=1), now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))


async def create(api: httpx.AsyncClient, headers: dict[str, str], **body: object) -> dict:
    r = await api.post("/api/v1/budgets", json={"name": "b", "limit_usd": "10", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def test_budget_crud(api, store) -> None:
    h = bearer(store, tenant(), "read", "alerts")
    made = await create(api, h, name="Monthly", limit_usd="12.5", scope="model", scope_value="gpt-4o")
    assert made["id"].startswith("bud_") and made["thresholds"] == [50, 80, 100] and made["period"] == "monthly"
    assert Decimal(made["limit_usd"]) == Decimal("12.5")
    assert (await api.get(f"/api/v1/budgets/{made['id']}", headers=h)).json()["data"] == made
    assert [b["id"] for b in (await api.get("/api/v1/budgets", headers=h)).json()["data"]] == [made["id"]]
    r = await api.patch(f"/api/v1/budgets/{made['id']}", json={"limit_usd": 20, "thresholds": [90, 10, 90]}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["thresholds"] == [10, 90] and Decimal(r.json()["data"]["limit_usd"]) == 20
    r = await api.put(f"/api/v1/budgets/{made['id']}", json={"name": "Rolling", "limit_usd": "1.000000000001",
                                                             "period": "rolling", "window": "7d"}, headers=h)
    assert r.status_code == 200, r.text
    replaced = r.json()["data"]
    assert (replaced["scope"], replaced["window"], replaced["limit_usd"]) == ("tenant", "7d", "1.000000000001")
    assert replaced["created_at"] == made["created_at"]
    assert (await api.delete(f"/api/v1/budgets/{made['id']}", headers=h)).status_code == 204
    assert (await api.get(f"/api/v1/budgets/{made['id']}", headers=h)).status_code == 404
    assert (await api.get(f"/api/v1/budgets/{made['id']}/status", headers=h)).status_code == 404
    assert (await api.get("/api/v1/budgets", headers=h)).json()["data"] == []


@pytest.mark.parametrize(("body", "says"), [
    ({"limit_usd": "10"}, "name"),
    ({"name": "b"}, "limit_usd"),
    ({"name": "b", "limit_usd": 0}, "greater than 0"),
    ({"name": "b", "limit_usd": "-1"}, "greater than 0"),
    ({"name": "b", "limit_usd": "ten"}, "limit_usd"),
    ({"name": "b", "limit_usd": "0.0000000000001"}, "decimal places"),
    ({"name": "b", "limit_usd": 10, "scope": "model"}, "scope_value"),
    ({"name": "b", "limit_usd": 10, "scope_value": "gpt-4o"}, "scope_value"),
    ({"name": "b", "limit_usd": 10, "scope": "api_key", "scope_value": "k"}, "scope"),
    ({"name": "b", "limit_usd": 10, "period": "rolling"}, "window"),
    ({"name": "b", "limit_usd": 10, "window": "7d"}, "window"),
    ({"name": "b", "limit_usd": 10, "period": "rolling", "window": "91d"}, "1h..90d"),
    ({"name": "b", "limit_usd": 10, "period": "rolling", "window": "30m"}, "hours or days"),
    ({"name": "b", "limit_usd": 10, "thresholds": [0]}, "1 to 1000"),
    ({"name": "b", "limit_usd": 10, "thresholds": []}, "thresholds"),
    ({"name": "b", "limit_usd": 10, "treshold": [50]}, "treshold"),
])
async def test_a_bad_budget_gets_400_naming_the_problem(api, store, body, says) -> None:
    r = await api.post("/api/v1/budgets", json=body, headers=bearer(store, tenant(), "alerts"))
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]


async def test_bad_bodies_and_updates_get_400(api, store) -> None:
    h = bearer(store, tenant(), "read", "alerts")
    r = await api.post("/api/v1/budgets", content=b"[1]", headers=h | {"content-type": "application/json"})
    assert r.status_code == 400, r.text
    made = await create(api, h)
    r = await api.patch(f"/api/v1/budgets/{made['id']}", json={"period": "rolling"}, headers=h)
    assert r.status_code == 400 and "window" in r.json()["error"]["message"]
    r = await api.get("/api/v1/usage", params={"scope": "model"}, headers=h)
    assert r.status_code == 400 and "scope_value" in r.json()["error"]["message"]
    r = await api.get("/api/v1/usage", params={"period": "weekly"}, headers=h)
    assert r.status_code == 400, r.text


async def test_managing_needs_alerts_or_admin_and_another_tenants_budget_is_404(api, store) -> None:
    mine, other = bearer(store, tenant(), "read", "alerts"), bearer(store, tenant(), "read", "admin")
    made = await create(api, mine)
    reader = {"authorization": bearer(store, "x", "read")["authorization"]}
    assert (await api.post("/api/v1/budgets", json={"name": "b", "limit_usd": 1}, headers=reader)).status_code == 403
    url = f"/api/v1/budgets/{made['id']}"
    for method, path in (("GET", url), ("GET", f"{url}/status"), ("PUT", url), ("PATCH", url), ("DELETE", url)):
        body = {"name": "mine now", "limit_usd": 1} if method in ("PUT", "PATCH") else None
        r = await api.request(method, path, json=body, headers=other)
        assert r.status_code == 404, (method, path, r.text)
    assert (await api.get("/api/v1/budgets", headers=other)).json()["data"] == []
    assert (await api.get(url, headers=mine)).json()["data"] == made  # untouched


async def test_usage_is_exact_for_every_scope(api, store) -> None:
    t = tenant()
    h = bearer(store, t, "read", "alerts")
    at = recent()
    gpt = [seed(store, t, at, "0.100000000001", user_id="u1", attributes={"llmscope.tags": json.dumps(["team-a"])})
           for _ in range(3)]
    claude = seed(store, t, at, "0.200000000003", request_model="claude-sonnet-4", user_id="u2",
                  attributes={"llmscope.tags": json.dumps(["team-a", "beta"])})
    seed(store, t, at, "5", operation="invoke_agent", request_model="")  # not a model call: never counted
    older = seed(store, t, at - timedelta(minutes=90), "0.01")  # in a 1d window, not in a 1h one
    for body in ({}, {"scope": "model", "scope_value": "gpt-4o"}, {"scope": "user_id", "scope_value": "u2"},
                 {"scope": "tag", "scope_value": "team-a"}, {"period": "rolling", "window": "1h"}):
        await create(api, h, **body)

    async def spent(**params: str) -> Decimal:
        r = await api.get("/api/v1/usage", params=params, headers=h)
        assert r.status_code == 200, r.text
        return Decimal(r.json()["data"]["usage"]["spent_usd"])

    month_start = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    in_month = older if at - timedelta(minutes=90) >= month_start else Decimal(0)
    assert await spent() == sum(gpt) + claude + in_month == Decimal("0.500000000006") + in_month
    assert await spent(scope="model", scope_value="gpt-4o") == Decimal("0.300000000003") + in_month
    assert await spent(scope="model", scope_value="nothing") == 0
    assert await spent(scope="user_id", scope_value="u2") == claude
    assert await spent(scope="tag", scope_value="team-a") == sum(gpt) + claude
    assert await spent(scope="tag", scope_value="beta") == claude
    assert await spent(period="rolling", window="1h") == sum(gpt) + claude
    assert await spent(period="rolling", window="1d") == sum(gpt) + claude + older

    r = (await api.get("/api/v1/usage", headers=h)).json()["data"]
    assert len(r["budgets"]) == 5  # no scope asked: every budget's status
    by = {(b["scope"], b["period"]): b for b in r["budgets"]}
    assert Decimal(by[("user_id", "monthly")]["spent_usd"]) == claude
    assert by[("user_id", "monthly")]["percent"] == float(round(claude * 10, 2))
    assert Decimal(by[("tenant", "rolling")]["spent_usd"]) == sum(gpt) + claude
    usage = r["usage"]
    assert Decimal(usage["forecast_usd"]) >= Decimal(usage["spent_usd"])
    r = (await api.get("/api/v1/usage", params={"scope": "tag", "scope_value": "team-a"}, headers=h)).json()["data"]
    assert [b["scope_value"] for b in r["budgets"]] == ["team-a"]


async def test_status_flips_when_the_limit_is_reached_and_answers_from_a_cache_refreshed_ahead(api, store) -> None:
    t = tenant()
    h = bearer(store, t, "read", "alerts")
    first = seed(store, t, recent(), "0.6")
    made = await create(api, h, limit_usd="1", scope="model", scope_value="gpt-4o")
    url = f"/api/v1/budgets/{made['id']}/status"
    before = (await api.get(url, headers=h)).json()["data"]
    assert before["within_budget"] is True and Decimal(before["spent_usd"]) == first and before["percent"] == 60.0
    assert before["thresholds_reached"] == [50] and Decimal(before["remaining_usd"]) == Decimal("0.4")
    assert before["period_start"] < before["as_of"] < before["period_end"]
    seed(store, t, recent(), "0.4")  # now exactly at the limit
    assert (await api.get(url, headers=h)).json()["data"] == before  # the cached answer, same as_of
    await asyncio.sleep(STATUS_TTL + 0.2)
    # Older than the TTL: still answered at once, while the next status is summed in the background.
    assert (await api.get(url, headers=h)).json()["data"] == before
    deadline = time.monotonic() + 10 * STATUS_TTL
    while (after := (await api.get(url, headers=h)).json()["data"])["within_budget"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert after["within_budget"] is False and Decimal(after["spent_usd"]) == 1 and after["percent"] == 100.0
    # A change to the budget drops its cached status at once.
    r = await api.patch(f"/api/v1/budgets/{made['id']}", json={"limit_usd": "2"}, headers=h)
    assert r.status_code == 200
    again = (await api.get(url, headers=h)).json()["data"]
    assert again["within_budget"] is True and again["percent"] == 50.0


async def test_the_sdk_checks_a_budget_over_http(settings, store) -> None:
    from llmscope_sdk import BudgetCheckFailed, Client

    t = tenant()
    h = bearer(store, t, "read", "alerts")
    key = h["authorization"].removeprefix("Bearer ")
    port = free_port()
    server = make_server(create_query_app(settings, store, KeyResolver(store, 30.0)), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.post("/api/v1/budgets", json={"name": "sdk", "limit_usd": "0.5"}, headers=h)
            budget = Budget.model_validate(r.json()["data"])
        spent = seed(store, t, recent(), "0.75")
        client = Client(api_key=key, query_endpoint=base, enabled=False)
        status = await asyncio.to_thread(client.budget_status, budget.id)
        assert (status.within_budget, status.spent_usd, status.limit_usd, status.percent) == (False, spent,
                                                                                                Decimal("0.5"), 150.0)
        assert await asyncio.to_thread(client.within_budget, budget.id) is False
        with pytest.raises(BudgetCheckFailed) as missing:
            await asyncio.to_thread(client.budget_status, "bud_nope")
        assert missing.value.status == 404
        # No status to be had: within_budget answers its default, never raises.
        assert await asyncio.to_thread(client.within_budget, "bud_nope", default=False) is False
        down = Client(api_key=key, query_endpoint=f"http://127.0.0.1:{free_port()}", enabled=False)
        assert await asyncio.to_thread(down.within_budget, budget.id) is True
    finally:
        server.should_exit = True
        await task


async def test_budget_changes_are_in_the_audit_log(settings, store) -> None:
    t = tenant()
    key = bearer(store, t, "read", "admin")
    app = create_query_app(settings, store, KeyResolver(store, 30.0), audit=BatchedWriter(store, "audit_log", 0.1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as api:
        made = await create(api, key | {"x-request-id": "rid-create"})
        url = f"/api/v1/budgets/{made['id']}"
        assert (await api.patch(url, json={"limit_usd": 3}, headers=key | {"x-request-id": "rid-patch"})).status_code == 200
        assert (await api.put(url, json={"name": 1}, headers=key | {"x-request-id": "rid-bad"})).status_code == 400
        assert (await api.delete(url, headers=key | {"x-request-id": "rid-delete"})).status_code == 204

        async def rows() -> list[dict]:
            found = (await api.get("/api/v1/admin/audit", headers=key)).json()["data"]
            return found if len(found) >= 4 else []

        found = {r["request_id"]: (r["action"], r["status"]) for r in await eventually(rows, timeout=5)}
    assert found == {"rid-create": ("create_budget", 201), "rid-patch": ("patch_budget", 200),
                     "rid-bad": ("put_budget", 400), "rid-delete": ("delete_budget", 204)}
