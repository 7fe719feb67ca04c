"""The worker's policy cache over the real chDB store: a change made through the API is read by the
first call `policy_refresh_seconds` after it, not before; a failed refresh keeps what was read."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pytest

from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.tenant_settings import PiiPolicy
from streams.policy_cache import PolicyCache
from tests.conftest import bearer, query_client
from tests.waiting import eventually

REFRESH = 0.3


class UnreachableStore(Store):
    """The real store, except that reads fail while `down` is set."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.database, self.down = inner, inner.database, False

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        if self.down:
            raise StoreError("injected: ClickHouse is unreachable")
        return self.inner.query_arrow(sql, params)

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:  # the session store is closed by its own fixture
        pass


@pytest.fixture
def cache_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"policy_refresh_seconds": REFRESH, "pii_policy": "mask"})


async def test_a_change_is_read_by_the_first_call_a_refresh_interval_after_it(store: Store, cache_settings: Settings) -> None:
    tenant = f"cache-{uuid.uuid4().hex[:8]}"
    cache = PolicyCache(store, cache_settings)
    assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.MASK  # the settings' default
    first_read = cache.loaded_at

    async with query_client(cache_settings, store) as api:
        r = await api.put("/api/v1/settings/pii", json={"policy": "drop"}, headers=bearer(store, tenant, "admin"))
    assert r.status_code == 200, r.text
    changed = time.monotonic()
    assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.MASK  # within the interval: cached
    assert cache.loaded_at == first_read

    async def read_since_change() -> bool:
        await cache.current()
        return cache.loaded_at > changed

    await eventually(read_since_change, timeout=REFRESH + 10, interval=0.01)
    assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.DROP
    assert cache.loaded_at - first_read >= REFRESH  # no read before the interval had passed


async def test_a_failed_refresh_keeps_the_policies_read_before_and_retries(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = f"cache-{uuid.uuid4().hex[:8]}"
    async with query_client(settings, store) as api:
        r = await api.put("/api/v1/settings/pii", json={"policy": "hash"}, headers=bearer(store, tenant, "admin"))
    assert r.status_code == 200, r.text
    flaky = UnreachableStore(store)
    cache = PolicyCache(flaky, settings.model_copy(update={"policy_refresh_seconds": 0.0, "pii_policy": "mask"}))

    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="streams.policy_cache"):
        assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.MASK  # nothing read yet: the default
    flaky.down = False
    assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.HASH
    read = cache.loaded_at

    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="streams.policy_cache"):
        assert (await cache.current()).for_tenant(tenant).pii is PiiPolicy.HASH  # kept, not reset to the default
    assert cache.loaded_at == read
    assert [r.getMessage() for r in caplog.records if r.name == "streams.policy_cache"] == [
        "cannot refresh tenant policies, keeping the previous ones: injected: ClickHouse is unreachable"
    ] * 2
    flaky.down = False
    await cache.current()
    assert cache.loaded_at > read  # retried at the next call
