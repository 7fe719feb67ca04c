"""The authorisation matrix over every route of both apps, enumerated from `app.routes` (so a route
added later is checked without listing it here): no key → 401; of three keys holding one scope
each, one gets past authorisation (for writing alert rules: `alerts` or `admin`) and the others
get 403; a key that is expired, revoked
or of a disabled tenant → 401; another tenant's key → nothing of the first tenant's data, and no
success on a path that names the first tenant's resources. Only the routes in PUBLIC answer
without a key. The live stream (a WebSocket) is checked by its close codes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from ingest.app import create_ingest_app
from ingest.ratelimit import LocalRateLimiter
from llmscope import tenants
from llmscope.auth import SCOPES, SUPERADMIN, KeyResolver, create_key, hash_key, key_row
from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app
from schemas.budget_rows import read_budget, write_budget
from schemas.budgets import Budget, BudgetCreate
from streams.stages.normalise import normalise
from tests.otlp_factory import llm_span, request_of

# Answer without a key: liveness, readiness, Prometheus metrics (no tenant data), the API description
# and docs, the console's files
# (the console signs in with a key and then calls the API).
PUBLIC = {"/health", "/ready", "/metrics", "/openapi.json", "/redoc", "/docs", "/docs/assets", "/console", "/console/vendor", "/"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
SINGLE_SCOPES = sorted(SCOPES - {SUPERADMIN})  # superadmin holds admin as well


@dataclass(frozen=True)
class Endpoint:
    method: str  # "WS" for a WebSocket
    path: str  # with {params}

    def url(self, values: dict[str, str]) -> str:
        return self.path.format_map(_Values(values))


class _Values(dict[str, str]):
    def __missing__(self, name: str) -> str:
        return "x"  # a parameter this matrix has no sample for: authorisation comes before the lookup


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every route of the app, included routers' routes too, as (method, path) pairs."""
    found = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        inner = [c.original_route for c in contexts()] if contexts else [route]
        for r in inner:
            if isinstance(r, WebSocketRoute) or type(r).__name__ == "APIWebSocketRoute":
                found.append(Endpoint("WS", r.path))  # type: ignore[attr-defined]
            elif isinstance(r, Mount):
                found.append(Endpoint("GET", r.path))
            elif isinstance(r, Route) or hasattr(r, "methods"):
                found += [Endpoint(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]  # type: ignore[attr-defined]
    return found


@dataclass
class World:
    """Tenant A's data and keys of every kind; tenant B's full key; the markers A's data carries."""

    a: str
    values: dict[str, str]
    markers: list[str]
    keys: dict[str, str]


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(store: Store) -> World:
    run = uuid.uuid4().hex[:8]
    a, b, c = f"mx-a-{run}", f"mx-b-{run}", f"mx-c-{run}"
    full = {"ingest", "read", "admin"}
    keys = {
        "a_full": create_key(store, a, "full", full),
        "b_full": create_key(store, b, "full", full),
        **{f"a_{s}": create_key(store, a, s, {s}) for s in SINGLE_SCOPES},
        "a_revoked": create_key(store, a, "revoked", full),
        "c_disabled": create_key(store, c, "disabled tenant", full),
    }
    expired = "lls_" + uuid.uuid4().hex + "Zz0000Zz"  # a full key whose time is up
    past = datetime.now(UTC) - timedelta(minutes=1)
    store.insert_rows(f"{store.database}.api_keys", [key_row(expired, a, "expired", frozenset(full), past)])
    keys["a_expired"] = expired
    tenants.revoke_key(store, tenants.find_key(store, hash_key(keys["a_revoked"])[:16], a) or {})
    tenants.update_tenant(store, c, disabled=True)
    tenants.update_tenant(store, a, name=f"Name of {a}")

    trace = os.urandom(16)
    now = time.time_ns()
    span = llm_span(trace, model=f"mx-model-{run}", start_ns=now - 60_000_000_000, extra={"user.id": f"mx-user-{run}"})
    store.insert_rows(f"{store.database}.spans", [s.to_row(now) for s in normalise(request_of([span]), a)])
    store.insert_rows(f"{store.database}.dead_letters", [{
        "tenant_id": a, "message_id": f"mx-message-{run}", "item": -1, "parked_at": time.time(), "received_at": time.time(),
        "source": "t/0/0", "format": "otlp", "trace_id": "", "span_id": "", "reason": f"mx-reason-{run}", "size_bytes": 1,
    }])  # fmt: skip
    store.insert_rows(f"{store.database}.audit_log", [{
        "at": time.time(), "tenant_id": a, "key_prefix": keys["a_full"][:12], "method": "PUT", "path": f"/mx-path-{run}",
        "action": "seeded", "status": 200, "request_id": f"mx-request-{run}",
    }])  # fmt: skip
    keys["a_target"] = create_key(store, a, "the key paths name", {"read"})  # the scope test may revoke it
    key_id = hash_key(keys["a_target"])[:16]
    values = {"tenant_id": a, "trace_id": trace.hex(), "key_id": key_id}
    markers = [a, trace.hex(), key_id, keys["a_full"][:12], f"mx-model-{run}", f"mx-user-{run}", f"mx-message-{run}",
               f"mx-reason-{run}", f"mx-path-{run}", f"mx-request-{run}"]  # fmt: skip
    return World(a, values, markers, keys)


@pytest.fixture(scope="module")
async def apps(settings: Settings, store: Store, world: World) -> AsyncIterator[dict[str, FastAPI]]:
    resolver = KeyResolver(store, 30.0)
    producer = IngestProducer(settings)
    limiter = LocalRateLimiter()
    yield {"query": create_query_app(settings, store, resolver), "ingest": create_ingest_app(settings, store, producer, resolver, limiter)}
    await resolver.close()
    await producer.close()


async def _call(app: FastAPI, endpoint: Endpoint, values: dict[str, str], key: str | None) -> httpx.Response:
    headers = {"content-type": "application/json", **(_h(key) if key else {})}
    body = b"{}" if endpoint.method in MUTATING else None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        return await client.request(endpoint.method, endpoint.url(values), headers=headers, content=body)


def _http(apps: dict[str, FastAPI]) -> Iterator[tuple[str, FastAPI, Endpoint]]:
    for name, app in apps.items():
        for endpoint in endpoints(app):
            if endpoint.method != "WS" and endpoint.path not in PUBLIC:
                yield name, app, endpoint


def test_the_matrix_sees_every_router(apps: dict[str, FastAPI]) -> None:
    paths = {e.path for app in apps.values() for e in endpoints(app)}
    for path in ("/v1/traces", "/api/v1/events", "/api/v1/traces", "/api/v1/admin/keys/{key_id}/rotate",
                 "/api/v1/admin/audit", "/api/v1/prices", "/api/v1/stream", "/api/v1/budgets/{budget_id}/status",
                 "/api/v1/usage"):  # fmt: skip
        assert path in paths


async def test_every_route_but_the_public_ones_wants_a_key_and_exactly_one_scope(apps, world) -> None:
    failures = []
    for name, app, endpoint in _http(apps):
        if (r := await _call(app, endpoint, world.values, None)).status_code != 401:
            failures.append(f"{name} {endpoint}: no key gave {r.status_code}")
        passed = []
        for scope in SINGLE_SCOPES:
            r = await _call(app, endpoint, world.values, world.keys[f"a_{scope}"])
            if r.status_code == 401 or (r.status_code == 403 and "scope" not in r.text):
                failures.append(f"{name} {endpoint}: the {scope} key gave {r.status_code}: {r.text[:200]}")
            elif r.status_code != 403 or "needs a key with the 'superadmin' scope" in r.text:
                passed.append(scope)  # past the route's scope (a superadmin-only operation refuses later)
        if not passed or len(passed) == len(SINGLE_SCOPES) or len(passed) > 1 and set(passed) != {"alerts", "admin"}:
            failures.append(f"{name} {endpoint}: keys of scopes {passed} got past authorisation")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("which", ["a_expired", "a_revoked", "c_disabled"])
async def test_expired_revoked_and_disabled_keys_get_401_everywhere(apps, world, which) -> None:
    failures = []
    for name, app, endpoint in _http(apps):
        r = await _call(app, endpoint, world.values, world.keys[which])
        if r.status_code != 401:
            failures.append(f"{name} {endpoint}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


async def test_another_tenants_key_gets_nothing_of_the_first_tenant(apps, world, store) -> None:
    # Resources the paths below name, made now (the scope test may have deleted or revoked others).
    untouched = create_key(store, world.a, "named by the paths below", {"read"})
    budget = Budget.create(BudgetCreate(name=f"mx-budget-{world.a}", limit_usd=Decimal(1)), datetime.now(UTC))
    write_budget(store, world.a, budget)
    values = world.values | {"key_id": hash_key(untouched)[:16], "budget_id": budget.id}
    markers = [*world.markers, budget.name]
    # The first tenant's own key sees its markers (so their absence below means something).
    seen = "".join([(await _call(apps["query"], e, values, world.keys["a_full"])).text
                    for _, _, e in _http(apps) if e.method == "GET"])  # fmt: skip
    assert all(m in seen for m in markers), [m for m in markers if m not in seen]
    failures = []
    for name, app, endpoint in _http(apps):
        r = await _call(app, endpoint, values, world.keys["b_full"])
        url = endpoint.url(values)
        leaked = [m for m in markers if m in r.text and m not in url]  # an echo of the path is no leak
        names_a = any("{" + p + "}" in endpoint.path for p in values)
        if leaked or (names_a and r.is_success):
            failures.append(f"{name} {endpoint}: {r.status_code}, leaked {leaked}: {r.text[:200]}")
    assert not failures, "\n".join(failures)
    [row] = [k for k in tenants.list_keys(store, world.a) if k["key_id"] == values["key_id"]]
    assert not row["revoked"] and row["expires_at"] is None  # neither revoked nor rotated by the other tenant
    assert read_budget(store, world.a, budget.id) == budget  # neither changed nor deleted by the other tenant


def _ws_close(app: FastAPI, key: str | None) -> int | None:
    """The close code the live stream answers a key with (None: it accepted it)."""
    with TestClient(app) as client:
        try:
            with client.websocket_connect("/api/v1/stream", headers=_h(key) if key else {}) as ws:
                if key is None:
                    ws.send_json({"type": "auth"})
                message = ws.receive_json()
                return None if message.get("type") == "ready" else -1
        except WebSocketDisconnect as exc:
            return exc.code


def test_the_live_stream_refuses_keys_the_same_way(apps, world) -> None:
    query = apps["query"]
    assert _ws_close(query, None) == 4401
    assert _ws_close(query, world.keys["a_read"]) is None
    assert {_ws_close(query, world.keys[f"a_{s}"]) for s in SINGLE_SCOPES if s != "read"} == {4403}
    assert {_ws_close(query, world.keys[k]) for k in ("a_expired", "a_revoked", "c_disabled")} == {4401}
