"""`/api/v1/admin/tenants/{id}/limits` over the real chDB store: the limits in effect are a tenant's
own over the settings' defaults; only a superadmin key sets them; bad values are a 400."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from llmscope.auth import KeyResolver, create_key
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def api(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    resolver = KeyResolver(store, 30.0)
    app = create_query_app(settings, store, resolver)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as client:
        yield client
    await resolver.close()


@pytest.fixture
def tenant(store: Store) -> tuple[str, dict[str, str]]:
    """A new tenant and an admin key of it."""
    name = f"lim-{uuid.uuid4().hex[:8]}"
    return name, _h(create_key(store, name, "admin", {"admin"}))


@pytest.fixture(scope="module")
def platform(store: Store) -> dict[str, str]:
    return _h(create_key(store, f"platform-{uuid.uuid4().hex[:6]}", "platform", {"superadmin"}))


async def test_a_tenant_without_limits_of_its_own_has_the_defaults(api, tenant, settings: Settings) -> None:
    name, admin = tenant
    r = await api.get(f"/api/v1/admin/tenants/{name}/limits", headers=admin)
    assert r.status_code == 200
    assert r.json()["data"] == {
        "tenant_id": name,
        "key_requests_per_second": settings.rate_limit_per_key,
        "key_spans_per_second": settings.rate_limit_spans_per_key,
        "tenant_requests_per_second": settings.rate_limit_per_tenant,
        "tenant_spans_per_second": settings.rate_limit_spans_per_tenant,
        "burst_seconds": settings.rate_limit_burst_seconds,
        "own": [],
    }


async def test_a_superadmin_sets_limits_and_a_later_put_replaces_them(api, tenant, platform, settings: Settings) -> None:
    name, admin = tenant
    url = f"/api/v1/admin/tenants/{name}/limits"
    r = await api.put(url, json={"tenant_spans_per_second": 123.5, "burst_seconds": 4}, headers=platform)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["tenant_spans_per_second"], data["burst_seconds"], data["own"]) == (123.5, 4, ["tenant_spans_per_second", "burst_seconds"])
    assert data["key_requests_per_second"] == settings.rate_limit_per_key
    assert (await api.get(url, headers=admin)).json()["data"] == data  # the tenant's admin reads them
    r = await api.put(url, json={"key_requests_per_second": 7}, headers=platform)  # left out: the default again
    data = r.json()["data"]
    assert (data["key_requests_per_second"], data["tenant_spans_per_second"], data["own"]) == (
        7, settings.rate_limit_spans_per_tenant, ["key_requests_per_second"],
    )  # fmt: skip


async def test_a_tenant_admin_cannot_raise_its_own_limits_nor_read_another_tenants(api, tenant, platform) -> None:
    name, admin = tenant
    r = await api.put(f"/api/v1/admin/tenants/{name}/limits", json={"key_requests_per_second": 1e6}, headers=admin)
    assert r.status_code == 403 and "superadmin" in r.json()["error"]["message"]
    assert (await api.get("/api/v1/admin/tenants/someone-else/limits", headers=admin)).status_code == 403


@pytest.mark.parametrize(
    "body",
    [{"key_requests_per_second": 0}, {"key_spans_per_second": -5}, {"burst_seconds": 7200}, {"requests": 5},
     {"tenant_requests_per_second": "fast"}],
)  # fmt: skip
async def test_bad_limits_are_a_400(api, tenant, platform, body: dict[str, object]) -> None:
    r = await api.put(f"/api/v1/admin/tenants/{tenant[0]}/limits", json=body, headers=platform)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


async def test_an_unknown_tenant_is_a_404(api, platform) -> None:
    for call in (api.get, lambda url, headers: api.put(url, json={}, headers=headers)):
        r = await call("/api/v1/admin/tenants/no-such-tenant-xyz/limits", headers=platform)
        assert r.status_code == 404 and "no tenant" in r.json()["error"]["message"]
