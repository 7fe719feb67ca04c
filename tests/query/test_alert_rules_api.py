"""The alert-rules API over the real chDB store: CRUD, 400s that say what is wrong, scopes, tenants."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llmscope.storage import Store
from tests.conftest import bearer

RULE = {
    "name": "Error rate over 10 %", "for": "2m", "cooldown": "10m",
    "condition": {"kind": "threshold", "metric": "error_rate", "comparison": ">", "value": 0.1, "window": "5m",
                  "filters": {"service": "chat-api"}},
}


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, dict[str, str]]:
    return {
        "a": bearer(store, "rules-a", "alerts", "read"),
        "a_admin": bearer(store, "rules-a", "admin", "read"),
        "a_read": bearer(store, "rules-a", "read"),
        "a_alerts_only": bearer(store, "rules-a", "alerts"),
        "b": bearer(store, "rules-b", "admin", "read"),
    }


async def _create(api, headers, body=RULE) -> dict:  # type: ignore[no-untyped-def]
    r = await api.post("/api/v1/alert-rules", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def test_a_created_rule_is_listed_read_updated_and_deleted(api, keys) -> None:
    rule = await _create(api, keys["a"])
    assert rule["id"].startswith("rule_") and rule["for"] == "2m" and rule["enabled"] is True
    assert rule["condition"]["filters"]["service"] == "chat-api"

    listed = (await api.get("/api/v1/alert-rules", headers=keys["a_read"])).json()["data"]
    assert rule["id"] in [r["id"] for r in listed]
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a_read"])).json()["data"] == rule

    r = await api.patch(f"/api/v1/alert-rules/{rule['id']}", json={"enabled": False, "for": "5m"}, headers=keys["a"])
    assert r.status_code == 200, r.text
    patched = r.json()["data"]
    assert patched["enabled"] is False and patched["for"] == "5m" and patched["condition"] == rule["condition"]

    replaced = RULE | {"name": "Latency", "condition": {"kind": "threshold", "metric": "latency_p95",
                                                        "comparison": ">", "value": 2000, "window": "10m"}}
    r = await api.put(f"/api/v1/alert-rules/{rule['id']}", json=replaced, headers=keys["a_admin"])
    assert r.status_code == 200, r.text
    put = r.json()["data"]
    assert put["name"] == "Latency" and put["enabled"] is True and put["created_at"] == rule["created_at"]
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a"])).json()["data"] == put

    assert (await api.delete(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a"])).status_code == 204
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a"])).status_code == 404
    listed = (await api.get("/api/v1/alert-rules", headers=keys["a"])).json()["data"]
    assert rule["id"] not in [r["id"] for r in listed]
    assert (await api.delete(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a"])).status_code == 404


@pytest.mark.parametrize(("change", "message"), [
    ({"condition": RULE["condition"] | {"metric": "cost"}}, "condition.metric: unknown metric 'cost'"),
    ({"condition": RULE["condition"] | {"window": "five minutes"}}, "condition.window: 'five minutes' is not a duration"),
    ({"condition": RULE["condition"] | {"group_by": "colour"}}, "unknown group_by dimension 'colour'"),
    ({"condition": RULE["condition"] | {"value": 5}}, "error_rate is a fraction between 0 and 1"),
    ({"condition": {"kind": "sometimes"}}, "unknown condition kind 'sometimes'"),
    ({"treshold": 3}, "unknown field 'treshold'"),
    ({"cooldown": "90s"}, "not a whole number of minutes"),
])
async def test_a_bad_rule_gets_a_400_that_names_the_problem(api, keys, change, message) -> None:
    r = await api.post("/api/v1/alert-rules", json=RULE | change, headers=keys["a"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert message in r.json()["error"]["message"]


async def test_a_bad_update_gets_a_400_and_leaves_the_rule_as_it_was(api, keys) -> None:
    rule = await _create(api, keys["a"])
    for method, body in (("patch", {"condition": {"kind": "absence", "minutes": 0}}), ("put", {"name": ""})):
        r = await api.request(method.upper(), f"/api/v1/alert-rules/{rule['id']}", json=body, headers=keys["a"])
        assert r.status_code == 400, r.text
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a"])).json()["data"] == rule
    r = await api.post("/api/v1/alert-rules", content=b"not json", headers=keys["a"] | {"content-type": "application/json"})
    assert r.status_code == 400


async def test_a_read_key_cannot_write_and_an_alerts_key_cannot_read(api, keys) -> None:
    rule = await _create(api, keys["a_alerts_only"])
    for method, path, body in (("POST", "", RULE), ("PATCH", f"/{rule['id']}", {"enabled": False}),
                               ("PUT", f"/{rule['id']}", RULE), ("DELETE", f"/{rule['id']}", None)):
        r = await api.request(method, f"/api/v1/alert-rules{path}", json=body, headers=keys["a_read"])
        assert r.status_code == 403, r.text
        assert "'alerts' or 'admin'" in r.json()["error"]["message"]
    assert (await api.get("/api/v1/alert-rules", headers=keys["a_alerts_only"])).status_code == 403
    assert (await api.get(f"/api/v1/alert-rules/{rule['id']}", headers=keys["a_read"])).json()["data"] == rule
    assert (await api.get("/api/v1/alert-rules")).status_code == 401


async def test_a_tenant_never_sees_or_changes_another_tenants_rules(api, keys) -> None:
    rule = await _create(api, keys["a"])
    assert rule["id"] not in [r["id"] for r in (await api.get("/api/v1/alert-rules", headers=keys["b"])).json()["data"]]
    path = f"/api/v1/alert-rules/{rule['id']}"
    assert (await api.get(path, headers=keys["b"])).status_code == 404
    assert (await api.patch(path, json={"enabled": False}, headers=keys["b"])).status_code == 404
    assert (await api.put(path, json=RULE, headers=keys["b"])).status_code == 404
    assert (await api.delete(path, headers=keys["b"])).status_code == 404
    assert (await api.get(path, headers=keys["a"])).json()["data"] == rule


def test_create_key_accepts_the_alerts_scope(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "LLMSCOPE_DATA_DIR": str(tmp_path)}
    cli = [sys.executable, "-m", "llmscope.cli"]
    assert subprocess.run([*cli, "migrate"], env=env, capture_output=True, timeout=120).returncode == 0
    done = subprocess.run([*cli, "create-key", "--tenant", "acme", "--scope", "alerts,read"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("lls_")
