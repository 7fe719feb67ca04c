"""The audit log: every mutating request of the query API, refused ones included, recorded off the
response path and readable by admins (`GET /api/v1/admin/audit`), each tenant its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import pyarrow as pa

from llmscope.auth import KeyResolver, create_key
from llmscope.batched_writer import BatchedWriter
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from query.app import create_query_app
from tests.waiting import eventually


class AuditStoreDown(Store):
    """The real store, except that audit rows cannot be written while `down`."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.database, self.down = inner, inner.database, True
        self.refused = 0

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.inner.query_arrow(sql, params)

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        if self.down and table.endswith(".audit_log"):
            self.refused += 1
            raise StoreError("injected: audit table unreachable")
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:
        pass


def _client(settings: Settings, store: Store, audit: BatchedWriter) -> httpx.AsyncClient:
    app = create_query_app(settings, store, KeyResolver(store, 30.0), audit=audit)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query")


def _h(key: str, rid: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **({"x-request-id": rid} if rid else {})}


async def test_mutating_requests_are_recorded_with_who_what_request_id_and_outcome(settings, store) -> None:
    tenant, other = f"aud-{uuid.uuid4().hex[:8]}", f"aud-{uuid.uuid4().hex[:8]}"
    admin, reader = create_key(store, tenant, "admin", {"admin", "read"}), create_key(store, tenant, "reader", {"read"})
    other_admin = create_key(store, other, "admin", {"admin"})
    audit = BatchedWriter(store, "audit_log", 0.1)
    async with _client(settings, store, audit) as api:
        assert (await api.put("/api/v1/settings/pii", json={"policy": "hash"}, headers=_h(admin, "rid-pii"))).status_code == 200
        price = {"model": "m", "input_mtok": 1, "output_mtok": 2}
        assert (await api.put("/api/v1/prices", json=price, headers=_h(reader, "rid-forbidden"))).status_code == 403
        made = await api.post("/api/v1/admin/keys", json={"scopes": ["read"]}, headers=_h(admin, "rid-key"))
        key_id = made.json()["data"]["key_id"]
        assert (await api.post(f"/api/v1/admin/keys/{key_id}/revoke", headers=_h(admin, "rid-revoke"))).status_code == 200
        assert (await api.post("/api/v1/admin/keys", json={"scopes": []}, headers=_h(admin, "rid-bad"))).status_code == 400
        assert (await api.delete("/api/v1/alert-rules/no-such-rule", headers=_h(admin, "rid-rule"))).status_code == 404
        assert (await api.get("/api/v1/prices", headers=_h(admin, "rid-read"))).status_code == 200  # not mutating
        assert (await api.put("/api/v1/settings/pii", json={"policy": "off"}, headers=_h(other_admin, "rid-other"))).status_code == 200

        async def rows() -> list[dict[str, Any]]:
            r = await api.get("/api/v1/admin/audit", headers=_h(admin))
            assert r.status_code == 200, r.text
            found: list[dict[str, Any]] = r.json()["data"]
            return found if len(found) >= 6 else []

        found = {row["request_id"]: row for row in await eventually(rows, timeout=5)}
        # A router this middleware was never told about (alert rules) is covered too; GETs and other tenants are not here.
        assert set(found) == {"rid-pii", "rid-forbidden", "rid-key", "rid-revoke", "rid-bad", "rid-rule"}
        assert (found["rid-rule"]["action"], found["rid-rule"]["status"]) == ("delete_rule", 404)
        assert found["rid-pii"] | {"at": None} == {
            "at": None, "tenant_id": tenant, "key_prefix": admin[:12], "method": "PUT", "path": "/api/v1/settings/pii",
            "action": "put_pii_policy", "status": 200, "request_id": "rid-pii",
        }  # fmt: skip
        assert (found["rid-forbidden"]["status"], found["rid-forbidden"]["key_prefix"]) == (403, reader[:12])
        assert (found["rid-revoke"]["action"], found["rid-revoke"]["path"]) == ("revoke_key", f"/api/v1/admin/keys/{key_id}/revoke")
        assert found["rid-bad"]["status"] == 400

        only = await api.get("/api/v1/admin/audit", params={"action": "revoke_key"}, headers=_h(admin))
        assert [r["request_id"] for r in only.json()["data"]] == ["rid-revoke"]
        first = (await api.get("/api/v1/admin/audit", params={"limit": 2}, headers=_h(admin))).json()
        rest = (await api.get("/api/v1/admin/audit", params={"limit": 10, "cursor": first["next_cursor"]}, headers=_h(admin))).json()
        ids = [r["request_id"] for r in first["data"] + rest["data"]]
        assert len(ids) == 6 and set(ids) == set(found) and rest["next_cursor"] is None
        # Newest first, compared as times: a row at a whole second is written without a fraction.
        times = [datetime.fromisoformat(r["at"]) for r in first["data"] + rest["data"]]
        assert times == sorted(times, reverse=True)
        assert (await api.get("/api/v1/admin/audit", params={"tenant_id": other}, headers=_h(admin))).status_code == 403
        assert (await api.get("/api/v1/admin/audit", params={"cursor": "nope"}, headers=_h(admin))).status_code == 400
    await audit.close()


async def test_a_refused_key_is_recorded_by_its_prefix_only(settings, store) -> None:
    platform = create_key(store, f"platform-{uuid.uuid4().hex[:6]}", "platform", {"superadmin"})
    audit = BatchedWriter(store, "audit_log", 0.1)
    rid = uuid.uuid4().hex
    unknown = "lls_" + uuid.uuid4().hex + "Zz0000Zz"
    async with _client(settings, store, audit) as api:
        r = await api.put("/api/v1/settings/pii", json={"policy": "off"}, headers=_h(unknown, rid))
        assert r.status_code == 401

        async def row() -> list[dict[str, Any]]:
            r = await api.get("/api/v1/admin/audit", params={"all_tenants": True, "request_id": rid}, headers=_h(platform))
            return list(r.json()["data"])

        [entry] = await eventually(row, timeout=5)
        assert (entry["tenant_id"], entry["key_prefix"], entry["status"]) == ("", unknown[:12], 401)
    await audit.close()


async def test_an_unreachable_store_neither_delays_nor_fails_the_request_and_rows_follow_when_it_is_back(settings, store) -> None:
    flaky = AuditStoreDown(store)
    tenant = f"aud-{uuid.uuid4().hex[:8]}"
    admin = create_key(store, tenant, "admin", {"admin"})
    audit = BatchedWriter(flaky, "audit_log", 0.1)
    async with _client(settings, flaky, audit) as api:
        started = time.monotonic()
        r = await api.put("/api/v1/settings/pii", json={"policy": "mask"}, headers=_h(admin, "rid-while-down"))
        assert r.status_code == 200 and time.monotonic() - started < 2.0
        sql = f"SELECT count() AS n FROM {store.database}.audit_log WHERE request_id = 'rid-while-down' AND tenant_id = {{t:String}}"
        await eventually(lambda: flaky.refused >= 2, timeout=5)  # flushes failed, and the rows were kept for the next
        assert store.query(sql, {"t": tenant})["n"][0] == 0
        flaky.down = False
        await eventually(lambda: store.query(sql, {"t": tenant})["n"][0] == 1, timeout=5)
    await audit.close()
