"""API key resolution over the real chDB store: answered from an in-memory copy, so requests never
wait on the store, new keys work at once, revocations within the refresh time, and unknown keys
cost next to nothing."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pytest

from llmscope.auth import KEY_LENGTH, KeyResolver, create_key, generate_key, hash_key, key_row, well_formed
from llmscope import tenants
from llmscope.errors import Unauthenticated, Unavailable
from llmscope.storage import Store, StoreError
from tests.waiting import eventually


class CountingStore(Store):
    """The real store; counts key reads and fails them while `down`."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.database = inner, inner.database
        self.reads, self.down = 0, False
        self.inserts: list[str] = []

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.inner.command(sql, params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        if "api_keys" in sql:
            self.reads += 1
            if self.down:
                raise StoreError("injected: store down")
        return self.inner.query_arrow(sql, params)

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        self.inserts.append(table)
        self.inner.insert(table, body, fmt, settings)

    def close(self) -> None:
        pass


def _tenant() -> str:
    return f"auth-{uuid.uuid4().hex[:8]}"


async def test_known_keys_are_answered_from_memory(store: Store) -> None:
    counting = CountingStore(store)
    key = create_key(store, _tenant(), "k", {"read"})
    resolver = KeyResolver(counting, refresh_seconds=60)
    first = await resolver.resolve(key)
    for _ in range(200):
        assert await resolver.resolve(key) == first
    assert counting.reads == 1
    assert first.scopes == frozenset({"read"})


async def test_a_key_created_after_the_copy_was_read_works_at_once(store: Store) -> None:
    resolver = KeyResolver(store, refresh_seconds=60)
    await resolver.resolve(create_key(store, _tenant(), "old", {"read"}))
    fresh = create_key(store, _tenant(), "new", {"ingest"})
    assert (await resolver.resolve(fresh)).scopes == frozenset({"ingest"})


async def test_a_flood_of_unknown_keys_reads_the_store_about_once_a_second_and_is_answered_at_once(store: Store) -> None:
    counting = CountingStore(store)
    resolver = KeyResolver(counting, refresh_seconds=60)
    known = create_key(store, _tenant(), "k", {"read"})
    await resolver.resolve(known)
    started = time.monotonic()

    async def unknown() -> None:
        with pytest.raises(Unauthenticated):
            await resolver.resolve("lls_" + uuid.uuid4().hex, client="10.0.0.66")

    await asyncio.gather(*(unknown() for _ in range(2000)))
    took = time.monotonic() - started
    assert took < 3.0  # only the address's few allowed misses waited for a read
    assert counting.reads <= 1 + 3 / KeyResolver.MIN_READ_GAP  # the first read, then at most one a gap
    assert (await resolver.resolve(known, client="10.0.0.66")).tenant_id  # known keys never wait


async def test_a_revoked_key_stops_working_within_the_refresh_time(store: Store) -> None:
    tenant = _tenant()
    key = create_key(store, tenant, "k", {"read"})
    resolver = KeyResolver(store, refresh_seconds=0.5)
    await resolver.resolve(key)
    row = store.query(f"SELECT * FROM {store.database}.api_keys FINAL WHERE key_hash = {{h:String}}", {"h": hash_key(key)})
    revoked = row.to_dicts()[0] | {"revoked": 1, "version": int(time.time() * 1000) + 1}
    revoked["created_at"] = revoked["created_at"].timestamp()
    store.insert_rows(f"{store.database}.api_keys", [revoked])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            await resolver.resolve(key)
        except Unauthenticated:
            return
        await asyncio.sleep(0.1)
    pytest.fail("revoked key still accepted after 3 s with a 0.5 s refresh")


async def test_the_store_down_means_503_before_the_first_read_and_the_known_keys_after(store: Store) -> None:
    counting = CountingStore(store)
    key = create_key(store, _tenant(), "k", {"read"})
    counting.down = True
    resolver = KeyResolver(counting, refresh_seconds=0.1)
    with pytest.raises(Unavailable):
        await resolver.resolve(key)
    counting.down = False
    await asyncio.sleep(KeyResolver.MIN_READ_GAP)
    assert await resolver.resolve(key)
    counting.down = True
    await asyncio.sleep(0.2)
    assert await resolver.resolve(key)  # the refresh fails; the copy keeps answering
    with pytest.raises(Unauthenticated):
        await resolver.resolve("lls_" + uuid.uuid4().hex)


def test_keys_carry_a_checksum_that_catches_every_single_character_typo() -> None:
    key = generate_key()
    assert len(key) == KEY_LENGTH and key.startswith("lls_") and well_formed(key)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i in range(4, len(key)):
        for c in alphabet:
            if c != key[i]:
                assert not well_formed(key[:i] + c + key[i + 1 :]), (i, c)
    assert not well_formed(key[:-1]) and not well_formed(key + "0")
    assert not well_formed("lls_" + key[4:-6] + "!!!!!!")


async def test_a_mistyped_key_is_refused_without_reading_the_store(store: Store) -> None:
    counting = CountingStore(store)
    resolver = KeyResolver(counting, refresh_seconds=60)
    key = generate_key()
    typo = key[:10] + ("a" if key[10] != "a" else "b") + key[11:]
    with pytest.raises(Unauthenticated, match="checksum"):
        await resolver.resolve(typo)
    assert counting.reads == 0


async def test_keys_made_before_the_checksum_keep_working(store: Store) -> None:
    legacy = "lls_" + uuid.uuid4().hex + "AbCdEfGh"  # 40 characters after the prefix, no checksum
    row = key_row(legacy, _tenant(), "legacy", frozenset({"read"}), None)
    store.insert_rows(f"{store.database}.api_keys", [row])
    assert (await KeyResolver(store, refresh_seconds=60).resolve(legacy)).scopes == frozenset({"read"})


async def test_last_use_is_written_once_per_flush_not_once_per_request(store: Store) -> None:
    counting = CountingStore(store)
    key = create_key(store, _tenant(), "k", {"read"})
    resolver = KeyResolver(counting, refresh_seconds=60, last_used_flush_seconds=0.3)
    table = f"{store.database}.api_key_usage"
    started = time.monotonic()
    for _ in range(300):
        await resolver.resolve(key)
    sql = f"SELECT count() AS n FROM {table} WHERE key_hash = {{h:String}}"
    await eventually(lambda: store.query(sql, {"h": hash_key(key)})["n"][0] == 1, timeout=5)
    assert counting.inserts.count(table) <= 1 + (time.monotonic() - started) / 0.3
    await resolver.close()


class GatedStore(CountingStore):
    """Key reads wait at a gate, to hold a read in flight."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.gate = threading.Event()

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        if "api_keys" in sql:
            self.gate.wait(10)
        return super().query_arrow(sql, params)


async def test_a_read_in_flight_during_a_revocation_does_not_bring_the_key_back(store: Store) -> None:
    gated = GatedStore(store)
    key = create_key(store, _tenant(), "k", {"read"})
    resolver = KeyResolver(gated, refresh_seconds=0.01)
    gated.gate.set()
    await resolver.resolve(key)
    gated.gate.clear()
    await asyncio.sleep(0.02)
    await resolver.resolve(key)  # starts a refresh, which now waits at the gate holding the key
    await asyncio.sleep(0.05)  # (the read is past its start, before the revocation)
    tenants.revoke_key(store, tenants.find_key(store, hash_key(key)[:16], None) or {})
    resolver.forget([hash_key(key)])
    gated.gate.set()
    for _ in range(20):  # the old read lands, then the next request's read
        with pytest.raises(Unauthenticated):
            await resolver.resolve(key)
        await asyncio.sleep(0.01)
