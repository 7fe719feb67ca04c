"""The tenants and keys admin API over the real chDB store: who manages which tenant, key lifecycle
(create shown once, list, revoke, rotate with a grace period, expiry), disabled tenants."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from llmscope.auth import KeyResolver, create_key, hash_key
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app
from tests.waiting import eventually


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _tenant() -> str:
    return f"adm-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def admin_api(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """A query app whose resolver refreshes its copy rarely (so revocations must take effect through
    the admin API's invalidation, not the refresh) and writes "last used" every 0.1 s."""
    resolver = KeyResolver(store, refresh_seconds=60.0, last_used_flush_seconds=0.1)
    app = create_query_app(settings, store, resolver)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as client:
        yield client
    await resolver.close()


@pytest.fixture(scope="module")
def platform(store: Store) -> dict[str, str]:
    return _h(create_key(store, f"platform-{uuid.uuid4().hex[:6]}", "platform", {"superadmin", "read"}))


async def _new_tenant(api: httpx.AsyncClient, platform: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A new tenant and an admin key of it, made through the API."""
    tenant = _tenant()
    assert (await api.post("/api/v1/admin/tenants", json={"tenant_id": tenant}, headers=platform)).status_code == 201
    r = await api.post("/api/v1/admin/keys", json={"tenant_id": tenant, "scopes": ["admin", "read"]}, headers=platform)
    assert r.status_code == 201, r.text
    return tenant, _h(r.json()["data"]["key"])


async def test_superadmin_creates_lists_and_renames_tenants_and_an_admin_sees_only_its_own(admin_api, platform) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    other, _ = await _new_tenant(admin_api, platform)
    listed = (await admin_api.get("/api/v1/admin/tenants", headers=platform)).json()["data"]
    assert {tenant, other} <= {t["tenant_id"] for t in listed}
    own = (await admin_api.get("/api/v1/admin/tenants", headers=admin)).json()["data"]
    assert [t["tenant_id"] for t in own] == [tenant]
    r = await admin_api.patch(f"/api/v1/admin/tenants/{tenant}", json={"name": "Team A"}, headers=admin)
    assert r.status_code == 200 and r.json()["data"]["name"] == "Team A"
    assert (await admin_api.patch(f"/api/v1/admin/tenants/{other}", json={"name": "x"}, headers=admin)).status_code == 403
    assert (await admin_api.get(f"/api/v1/admin/tenants/{other}", headers=admin)).status_code == 403
    assert (await admin_api.post("/api/v1/admin/tenants", json={"tenant_id": _tenant()}, headers=admin)).status_code == 403
    dup = await admin_api.post("/api/v1/admin/tenants", json={"tenant_id": tenant}, headers=platform)
    assert dup.status_code == 409 and "exists" in dup.json()["error"]["message"]
    bad = await admin_api.post("/api/v1/admin/tenants", json={"tenant_id": "no spaces"}, headers=platform)
    assert bad.status_code == 400


async def test_renaming_keeps_a_tenant_enabled_and_a_new_key_does_not_rename_it(admin_api, platform, store) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    await admin_api.patch(f"/api/v1/admin/tenants/{tenant}", json={"name": "Named"}, headers=admin)
    create_key(store, tenant, "cli", {"read"})  # the CLI's create-key on an existing tenant
    assert (await admin_api.get(f"/api/v1/admin/tenants/{tenant}", headers=admin)).json()["data"]["name"] == "Named"


async def test_a_disabled_tenants_keys_stop_at_once_and_come_back_when_enabled(admin_api, platform) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    assert (await admin_api.get("/api/v1/whoami", headers=admin)).status_code == 200
    r = await admin_api.patch(f"/api/v1/admin/tenants/{tenant}", json={"disabled": True}, headers=platform)
    assert r.status_code == 200 and r.json()["data"]["disabled"] is True
    assert (await admin_api.get("/api/v1/whoami", headers=admin)).status_code == 401
    await admin_api.patch(f"/api/v1/admin/tenants/{tenant}", json={"disabled": False}, headers=platform)
    await eventually(lambda: _status(admin_api, "/api/v1/whoami", admin, 200), timeout=5)


async def test_only_a_superadmin_disables_and_never_its_own_tenant(admin_api, platform) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    assert (await admin_api.patch(f"/api/v1/admin/tenants/{tenant}", json={"disabled": True}, headers=admin)).status_code == 403
    own = (await admin_api.get("/api/v1/whoami", headers=platform)).json()["data"]["tenant_id"]
    r = await admin_api.patch(f"/api/v1/admin/tenants/{own}", json={"disabled": True}, headers=platform)
    assert r.status_code == 409


async def _status(api: httpx.AsyncClient, path: str, headers: dict[str, str], expected: int) -> bool:
    return (await api.get(path, headers=headers)).status_code == expected


async def test_a_key_is_shown_once_listed_with_its_details_and_revoked_at_once(admin_api, platform) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    r = await admin_api.post("/api/v1/admin/keys", json={"name": "ci", "scopes": ["read"], "expires_at": expires}, headers=admin)
    assert r.status_code == 201, r.text
    made = r.json()["data"]
    key, key_id = made["key"], made["key_id"]
    assert made["tenant_id"] == tenant and made["scopes"] == ["read"] and made["active"]
    assert key.startswith(made["key_prefix"]) and key_id == hash_key(key)[:16]
    assert (await admin_api.get("/api/v1/whoami", headers=_h(key))).status_code == 200
    listed = (await admin_api.get("/api/v1/admin/keys", headers=admin)).json()["data"]
    mine = next(k for k in listed if k["key_id"] == key_id)
    assert "key" not in mine and mine["name"] == "ci" and mine["expires_at"].startswith(expires[:19])
    assert await eventually(lambda: _last_used(admin_api, admin, key_id), timeout=5)
    r = await admin_api.post(f"/api/v1/admin/keys/{key_id}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["data"]["revoked"] is True and not r.json()["data"]["active"]
    assert (await admin_api.get("/api/v1/whoami", headers=_h(key))).status_code == 401


async def _last_used(api: httpx.AsyncClient, admin: dict[str, str], key_id: str) -> str | None:
    return (await api.get(f"/api/v1/admin/keys/{key_id}", headers=admin)).json()["data"]["last_used_at"]


async def test_an_expired_key_is_refused(admin_api, platform, store) -> None:
    tenant, _ = await _new_tenant(admin_api, platform)
    key = create_key(store, tenant, "short", {"read"}, expires_at=datetime.now(UTC) + timedelta(seconds=1))
    assert (await admin_api.get("/api/v1/whoami", headers=_h(key))).status_code == 200
    await eventually(lambda: _status(admin_api, "/api/v1/whoami", _h(key), 401), timeout=5, interval=0.1)
    r = await admin_api.get("/api/v1/whoami", headers=_h(key))
    assert "expired" in r.json()["error"]["message"]


async def test_rotation_gives_a_new_key_and_the_old_one_works_until_the_grace_ends(admin_api, platform) -> None:
    _, admin = await _new_tenant(admin_api, platform)
    made = (await admin_api.post("/api/v1/admin/keys", json={"name": "svc", "scopes": ["read"]}, headers=admin)).json()["data"]
    r = await admin_api.post(f"/api/v1/admin/keys/{made['key_id']}/rotate", json={"grace_seconds": 2}, headers=admin)
    assert r.status_code == 201, r.text
    new, old = r.json()["data"]["new"], r.json()["data"]["old"]
    assert new["name"] == "svc" and new["scopes"] == ["read"] and new["key"] != made["key"]
    assert old["expires_at"] is not None and old["active"]
    assert (await admin_api.get("/api/v1/whoami", headers=_h(made["key"]))).status_code == 200
    assert (await admin_api.get("/api/v1/whoami", headers=_h(new["key"]))).status_code == 200
    await eventually(lambda: _status(admin_api, "/api/v1/whoami", _h(made["key"]), 401), timeout=6, interval=0.1)
    assert (await admin_api.get("/api/v1/whoami", headers=_h(new["key"]))).status_code == 200


async def test_an_admin_manages_only_its_own_tenants_keys(admin_api, platform) -> None:
    _, admin_a = await _new_tenant(admin_api, platform)
    tenant_b, admin_b = await _new_tenant(admin_api, platform)
    made = (await admin_api.post("/api/v1/admin/keys", json={"scopes": ["read"]}, headers=admin_a)).json()["data"]
    for method, path in (("GET", ""), ("POST", "/revoke"), ("POST", "/rotate")):
        r = await admin_api.request(method, f"/api/v1/admin/keys/{made['key_id']}{path}", headers=admin_b)
        assert r.status_code == 404, (method, path, r.text)
    assert made["key_id"] not in str((await admin_api.get("/api/v1/admin/keys", headers=admin_b)).json())
    r = await admin_api.get("/api/v1/admin/keys", params={"tenant_id": made["tenant_id"]}, headers=admin_b)
    assert r.status_code == 403
    r = await admin_api.post("/api/v1/admin/keys", json={"tenant_id": made["tenant_id"], "scopes": ["read"]}, headers=admin_b)
    assert r.status_code == 403
    assert (await admin_api.get("/api/v1/whoami", headers=_h(made["key"]))).status_code == 200
    listed = (await admin_api.get("/api/v1/admin/keys", params={"tenant_id": tenant_b}, headers=platform)).json()["data"]
    assert listed and {k["tenant_id"] for k in listed} == {tenant_b}


async def test_only_a_superadmin_grants_or_manages_superadmin_keys(admin_api, platform, store) -> None:
    tenant, admin = await _new_tenant(admin_api, platform)
    r = await admin_api.post("/api/v1/admin/keys", json={"scopes": ["superadmin"]}, headers=admin)
    assert r.status_code == 403 and "superadmin" in r.json()["error"]["message"]
    strong = create_key(store, tenant, "platform in tenant", {"superadmin"})
    strong_id = hash_key(strong)[:16]
    assert (await admin_api.post(f"/api/v1/admin/keys/{strong_id}/rotate", headers=admin)).status_code == 403
    assert (await admin_api.post(f"/api/v1/admin/keys/{strong_id}/revoke", headers=platform)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["write"]}, "scopes"),
        ({"scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"scopes": ["read"], "name": "a\nb"}, "name"),
        ({"scopes": ["read"], "owner": "x"}, "owner"),
    ],
)
async def test_bad_key_requests_get_400_naming_the_field(admin_api, platform, body, field) -> None:
    _, admin = await _new_tenant(admin_api, platform)
    r = await admin_api.post("/api/v1/admin/keys", json=body, headers=admin)
    assert r.status_code == 400 and field in r.json()["error"]["message"], r.text
