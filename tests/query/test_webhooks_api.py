"""The webhook endpoints API over the real chDB store: the secret shown only at creation and on
rotation, the SSRF guard at creation and on change, updates, test deliveries into the outbox,
scopes, and tenant isolation on every route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.webhook_rows import read_endpoints
from tests.conftest import bearer, query_client

URL = "http://127.0.0.1:9/hook"  # allowed only with webhook_allow_private


@pytest.fixture(scope="module")
async def lan_api(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The query API with private destinations allowed (as in `up`)."""
    async with query_client(settings.model_copy(update={"webhook_allow_private": True}), store) as client:
        yield client


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, dict[str, str]]:
    return {
        "a": bearer(store, "hooks-a", "admin", "read"),
        "a_read": bearer(store, "hooks-a", "read"),
        "a_alerts": bearer(store, "hooks-a", "alerts"),
        "b": bearer(store, "hooks-b", "admin", "read"),
    }


async def _create(api: httpx.AsyncClient, headers: dict[str, str], **body: object) -> dict:
    r = await api.post("/api/v1/webhooks", json={"url": URL, **body}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def test_the_secret_is_shown_at_creation_and_never_by_a_read(lan_api, keys, store) -> None:
    made = await _create(lan_api, keys["a"], description="ops", event_types=["alert.firing"], format="slack")
    assert made["secret"].startswith("whsec_")
    assert made["event_types"] == ["alert.firing"] and made["format"] == "slack" and made["enabled"] is True
    one = await lan_api.get(f"/api/v1/webhooks/{made['id']}", headers=keys["a_read"])
    assert one.status_code == 200
    assert "secret" not in one.text and made["secret"] not in one.text
    assert one.json()["data"] == {k: v for k, v in made.items() if k != "secret"}
    listed = await lan_api.get("/api/v1/webhooks", headers=keys["a_read"])
    assert made["id"] in [e["id"] for e in listed.json()["data"]]
    assert "whsec_" not in listed.text
    stored = read_endpoints(store, "hooks-a", made["id"])[0]
    assert stored.secret == made["secret"]  # the worker signs with what the caller was shown


@pytest.mark.parametrize("url", ["http://127.0.0.1:8123/", "http://localhost/hook", "http://169.254.169.254/latest",
                                 "http://[::1]/x", "http://10.0.0.1/", "http://[::ffff:127.0.0.1]/"])
async def test_private_destinations_are_refused_with_400_unless_allowed(api, lan_api, keys, url: str) -> None:
    r = await api.post("/api/v1/webhooks", json={"url": url}, headers=keys["a"])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "blocked_destination"
    assert "LLMSCOPE_WEBHOOK_ALLOW_PRIVATE" in r.json()["error"]["message"]
    made = await _create(lan_api, keys["a"])
    r = await api.patch(f"/api/v1/webhooks/{made['id']}", json={"url": url}, headers=keys["a"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "blocked_destination"


@pytest.mark.parametrize(("body", "says"), [
    ({"url": "ftp://example.com/"}, "scheme"),
    ({"url": "https://user:pw@example.com/"}, "credentials"),
    ({"url": "https://example.com/", "format": "xml"}, "format"),
    ({"url": "https://example.com/", "event_types": ["alert.exploded"]}, "event_types"),
    ({"url": "https://example.com/", "colour": "red"}, "colour"),
    ({"url": "https://no-such-host.invalid/"}, "cannot be resolved"),
])
async def test_bad_endpoints_get_a_400_that_says_why(api, keys, body: dict, says: str) -> None:
    r = await api.post("/api/v1/webhooks", json=body, headers=keys["a"])
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]


async def test_update_replaces_the_given_fields_and_null_event_types_means_all(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"], event_types=["alert.firing"])
    path = f"/api/v1/webhooks/{made['id']}"
    r = await lan_api.patch(path, json={"url": "http://127.0.0.1:10/new", "format": "slack", "enabled": False},
                            headers=keys["a"])
    assert r.status_code == 200, r.text
    got = r.json()["data"]
    assert (got["url"], got["format"], got["enabled"], got["event_types"]) == ("http://127.0.0.1:10/new", "slack", False, ["alert.firing"])
    r = await lan_api.patch(path, json={"event_types": None}, headers=keys["a"])
    assert r.json()["data"]["event_types"] is None
    assert (await lan_api.get(path, headers=keys["a"])).json()["data"]["event_types"] is None
    for body, says in (({}, "nothing to change"), ({"enabled": None}, "enabled cannot be null"),
                       ({"format": "yaml"}, "format")):
        r = await lan_api.patch(path, json=body, headers=keys["a"])
        assert r.status_code == 400 and says in r.json()["error"]["message"], r.text


async def test_rotation_returns_a_new_secret_once_and_keeps_the_old_one_signing(lan_api, keys, store) -> None:
    made = await _create(lan_api, keys["a"])
    r = await lan_api.post(f"/api/v1/webhooks/{made['id']}/rotate-secret", headers=keys["a"])
    assert r.status_code == 200, r.text
    rotated = r.json()["data"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.fromisoformat(made["created_at"]) < timedelta(hours=25)
    stored = read_endpoints(store, "hooks-a", made["id"])[0]
    assert stored.signing_secrets(expires - timedelta(minutes=1)) == [rotated["secret"], made["secret"]]
    assert stored.signing_secrets(expires + timedelta(minutes=1)) == [rotated["secret"]]
    one = await lan_api.get(f"/api/v1/webhooks/{made['id']}", headers=keys["a"])
    assert rotated["secret"] not in one.text and made["secret"] not in one.text


async def test_a_test_event_is_put_in_the_outbox_and_listed_as_a_pending_delivery(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"])
    r = await lan_api.post(f"/api/v1/webhooks/{made['id']}/test", headers=keys["a"])
    assert r.status_code == 202, r.text
    queued = r.json()["data"]
    assert queued["event_type"] == "webhook.test" and queued["status"] == "pending" and queued["attempts"] == []
    listed = await lan_api.get(f"/api/v1/webhooks/{made['id']}/deliveries", headers=keys["a_read"])
    assert listed.status_code == 200
    assert [(d["event_id"], d["status"], d["attempt_count"]) for d in listed.json()["data"]] == [(queued["event_id"], "pending", 0)]


async def test_deliveries_page_with_a_cursor(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"])
    sent = [(await lan_api.post(f"/api/v1/webhooks/{made['id']}/test", headers=keys["a"])).json()["data"]["event_id"]
            for _ in range(3)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await lan_api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params=params, headers=keys["a"])).json()
        seen += [d["event_id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(sent)
    r = await lan_api.get(f"/api/v1/webhooks/{made['id']}/deliveries", params={"cursor": "nonsense"}, headers=keys["a"])
    assert r.status_code == 400 and "cursor" in r.json()["error"]["message"]


async def test_a_disabled_endpoint_cannot_be_tested(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"], enabled=False)
    r = await lan_api.post(f"/api/v1/webhooks/{made['id']}/test", headers=keys["a"])
    assert r.status_code == 400 and "disabled" in r.json()["error"]["message"]


async def test_delete_returns_the_endpoint_and_it_is_gone(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"])
    r = await lan_api.delete(f"/api/v1/webhooks/{made['id']}", headers=keys["a"])
    assert r.status_code == 200 and r.json()["data"]["id"] == made["id"] and "secret" not in r.json()["data"]
    assert (await lan_api.get(f"/api/v1/webhooks/{made['id']}", headers=keys["a"])).status_code == 404
    listed = await lan_api.get("/api/v1/webhooks", headers=keys["a"])
    assert made["id"] not in [e["id"] for e in listed.json()["data"]]


async def test_a_read_key_reads_but_does_not_change(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"])
    path = f"/api/v1/webhooks/{made['id']}"
    for method, url, body in (("POST", "/api/v1/webhooks", {"url": URL}), ("PATCH", path, {"enabled": False}),
                              ("DELETE", path, None), ("POST", f"{path}/rotate-secret", None), ("POST", f"{path}/test", None)):
        r = await lan_api.request(method, url, json=body, headers=keys["a_read"])
        assert r.status_code == 403, (method, url, r.text)
    assert (await lan_api.get(path, headers=keys["a_read"])).status_code == 200


async def test_another_tenant_can_neither_see_nor_touch_an_endpoint(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a"])
    path = f"/api/v1/webhooks/{made['id']}"
    for method, url, body in (("GET", path, None), ("PATCH", path, {"enabled": False}), ("DELETE", path, None),
                              ("POST", f"{path}/rotate-secret", None), ("POST", f"{path}/test", None),
                              ("GET", f"{path}/deliveries", None)):
        r = await lan_api.request(method, url, json=body, headers=keys["b"])
        assert r.status_code == 404, (method, url, r.text)
    listed = await lan_api.get("/api/v1/webhooks", headers=keys["b"])
    assert made["id"] not in [e["id"] for e in listed.json()["data"]]
    still = (await lan_api.get(path, headers=keys["a"])).json()["data"]
    assert still["enabled"] is True and still["updated_at"] == made["updated_at"]  # b's attempts changed nothing
    deliveries = await lan_api.get(f"{path}/deliveries", headers=keys["a"])
    assert deliveries.json()["data"] == []  # b's test request put nothing in a's outbox


async def test_an_alerts_key_manages_endpoints_without_admin(lan_api, keys) -> None:
    made = await _create(lan_api, keys["a_alerts"])
    path = f"/api/v1/webhooks/{made['id']}"
    assert (await lan_api.patch(path, json={"description": "on call"}, headers=keys["a_alerts"])).status_code == 200
    assert (await lan_api.post(f"{path}/test", headers=keys["a_alerts"])).status_code == 202
    assert (await lan_api.post(f"{path}/rotate-secret", headers=keys["a_alerts"])).status_code == 200
    assert (await lan_api.delete(path, headers=keys["a_alerts"])).status_code == 200
