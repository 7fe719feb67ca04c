"""The PII policy API over the real chDB store: default vs tenant policy, admin scope, validation."""

from __future__ import annotations


import pytest

from llmscope.storage import Store
from schemas.tenant_settings import PiiPolicy
from streams.policy_cache import load_policies
from tests.conftest import bearer


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, dict[str, str]]:
    return {
        "a": bearer(store, "policies-a", "admin", "read"),
        "a_read": bearer(store, "policies-a", "read"),
        "b": bearer(store, "policies-b", "admin", "read"),
        "c": bearer(store, "policies-c", "admin", "read"),
    }


async def test_a_tenant_without_its_own_policy_gets_the_settings_default(api, keys, settings) -> None:
    r = await api.get("/api/v1/settings/pii", headers=keys["b"])
    assert r.status_code == 200
    assert r.json() == {"data": {"policy": settings.pii_policy, "source": "default"}, "next_cursor": None}


@pytest.mark.parametrize("policy", ["off", "detect", "mask", "hash", "drop"])
async def test_put_sets_the_tenant_policy_and_the_worker_loads_it(api, keys, store, settings, policy: str) -> None:
    r = await api.put("/api/v1/settings/pii", json={"policy": policy}, headers=keys["a"])
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"policy": policy, "source": "tenant"}
    r = await api.get("/api/v1/settings/pii", headers=keys["a_read"])
    assert r.json()["data"] == {"policy": policy, "source": "tenant"}
    loaded = load_policies(store, settings)
    assert loaded.pii["policies-a"] is PiiPolicy(policy)
    assert loaded.for_tenant("policies-a").pii is PiiPolicy(policy)
    assert "policies-b" not in loaded.pii  # other tenants keep the default


async def test_the_latest_put_wins(api, keys) -> None:
    for policy in ("drop", "hash", "detect"):
        assert (await api.put("/api/v1/settings/pii", json={"policy": policy}, headers=keys["c"])).status_code == 200
    assert (await api.get("/api/v1/settings/pii", headers=keys["c"])).json()["data"]["policy"] == "detect"


async def test_put_needs_the_admin_scope(api, keys) -> None:
    before = (await api.get("/api/v1/settings/pii", headers=keys["a"])).json()["data"]
    r = await api.put("/api/v1/settings/pii", json={"policy": "off"}, headers=keys["a_read"])
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden" and "admin" in r.json()["error"]["message"]
    assert (await api.get("/api/v1/settings/pii", headers=keys["a"])).json()["data"] == before
    assert (await api.get("/api/v1/settings/pii")).status_code == 401


@pytest.mark.parametrize(
    "body", [{"policy": "redact"}, {"policy": "MASK"}, {"policy": None}, {}, {"policy": "mask", "extra": 1}, [1]]
)
async def test_bad_policies_are_400(api, keys, body: object) -> None:
    r = await api.put("/api/v1/settings/pii", json=body, headers=keys["b"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert (await api.get("/api/v1/settings/pii", headers=keys["b"])).json()["data"]["source"] == "default"


async def test_the_openapi_document_lists_the_policies(api) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert {"get", "put"} <= set(doc["paths"]["/api/v1/settings/pii"])
    assert set(doc["components"]["schemas"]["PiiPolicy"]["enum"]) == {"off", "detect", "mask", "hash", "drop"}
