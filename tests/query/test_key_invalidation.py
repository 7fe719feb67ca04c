"""Revocations and disabled tenants reach every replica: two query apps, each with its own key
resolver over one store (as two query processes have), told through the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from llmscope.auth import KeyResolver, create_key, hash_key
from llmscope.key_invalidation import KeyInvalidation
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app
from tests.waiting import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"
REFRESH = 60.0  # far beyond the waits below: only the invalidation can make the replica refuse in time
# The bound; how fast it really is (≈0.3 s) is measured, not asserted: a busy machine is slower.
WITHIN = 5.0


@pytest.fixture
async def replicas(settings: Settings, store: Store) -> AsyncIterator[list[httpx.AsyncClient]]:
    channel = f"test-keys-{uuid.uuid4().hex}"
    clients, closers = [], []
    for _ in range(2):
        resolver = KeyResolver(store, REFRESH)
        invalidation = KeyInvalidation(resolver, REDIS_URL, channel)
        invalidation.start()
        await asyncio.wait_for(invalidation.listening.wait(), 5)
        app = create_query_app(settings, store, resolver, key_invalidation=invalidation)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query"))
        closers += [invalidation.close, resolver.close]
    yield clients
    for client in clients:
        await client.aclose()
    for close in closers:
        await close()


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _refused(client: httpx.AsyncClient, key: str) -> bool:
    return (await client.get("/api/v1/whoami", headers=_h(key))).status_code == 401


async def test_a_key_revoked_on_one_replica_is_refused_by_the_other_before_its_own_refresh(replicas, store) -> None:
    first, second = replicas
    tenant = f"inv-{uuid.uuid4().hex[:8]}"
    admin, key = create_key(store, tenant, "admin", {"admin"}), create_key(store, tenant, "app", {"read"})
    assert (await second.get("/api/v1/whoami", headers=_h(key))).status_code == 200  # in the second's copy now
    r = await first.post(f"/api/v1/admin/keys/{hash_key(key)[:16]}/revoke", headers=_h(admin))
    assert r.status_code == 200, r.text
    await eventually(lambda: _refused(second, key), timeout=WITHIN, interval=0.02)


async def test_a_tenant_disabled_on_one_replica_is_refused_by_the_other_before_its_own_refresh(replicas, store) -> None:
    first, second = replicas
    tenant = f"inv-{uuid.uuid4().hex[:8]}"
    platform = create_key(store, f"platform-{uuid.uuid4().hex[:6]}", "platform", {"superadmin"})
    key = create_key(store, tenant, "app", {"read"})
    assert (await second.get("/api/v1/whoami", headers=_h(key))).status_code == 200
    r = await first.patch(f"/api/v1/admin/tenants/{tenant}", json={"disabled": True}, headers=_h(platform))
    assert r.status_code == 200, r.text
    await eventually(lambda: _refused(second, key), timeout=WITHIN, interval=0.02)
