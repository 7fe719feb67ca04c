"""API keys, principals and scopes: generation, SHA-256 hashing, lookup from an in-memory copy of
the keys table, scope checks. Plumbing, because every role that faces a client needs it: ingest
and query (llmscope/http.py authenticates their requests), the live stream, and the CLI and `up`,
which create keys."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import string
import time
from dataclasses import dataclass

from llmscope.errors import Forbidden, Unauthenticated, Unavailable
from llmscope.storage import Store, StoreError

KEY_PREFIX = "lls_"
_ALPHABET = string.ascii_letters + string.digits
# alerts: write alert rules (reading them needs read; admin may do both).
SCOPES = frozenset({"ingest", "read", "admin", "alerts"})

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_prefix: str
    scopes: frozenset[str]

    def require(self, scope: str, *alternatives: str) -> None:
        """Pass if the key holds `scope` or any of the alternatives."""
        wanted = (scope, *alternatives)
        if not self.scopes.intersection(wanted):
            raise Forbidden(f"this API key lacks the {' or '.join(repr(s) for s in wanted)} scope")


def generate_key() -> str:
    """A prefixed, high-entropy key (≈238 bits, base62) so secret scanners can recognise it."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def hash_key(key: str) -> str:
    # A fast hash is enough: keys are random, not human passwords.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: Store, tenant_id: str, name: str, scopes: set[str]) -> str:
    unknown = scopes - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    key = generate_key()
    db = store.database
    now_ms = int(time.time() * 1000)
    store.insert_rows(
        f"{db}.tenants",
        [{"tenant_id": tenant_id, "name": tenant_id, "created_at": now_ms / 1000, "version": now_ms}],
    )
    store.insert_rows(
        f"{db}.api_keys",
        [
            {
                "key_hash": hash_key(key),
                "key_prefix": key[:12],
                "tenant_id": tenant_id,
                "name": name,
                "scopes": sorted(scopes),
                "created_at": now_ms / 1000,
                "revoked": 0,
                "version": now_ms,
            }
        ],
    )
    return key


def extract_key(authorization: str | None, x_api_key: str | None) -> str:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated("Authorization header must be 'Bearer <api key>'")
    raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")


class KeyResolver:
    """Resolves a presented key to its principal from an in-memory copy of the api_keys table.

    The copy is re-read in the background every `refresh_seconds`, so a request never waits for
    the store (nor queues behind an analytics query on it), and a key created or revoked by another
    process takes effect within that time. An unknown key waits for a read that started after it
    arrived (so a key used right after it was created works), but reads start at most once per
    MIN_READ_GAP however many unknown keys arrive, and each client address may keep only a few
    unknown keys waiting (MISSES_PER_SECOND, MISS_BURST); beyond that its unknown keys get their
    401 at once. A flood of random keys costs one small query a second in all, and holds nothing."""

    MIN_READ_GAP = 0.25
    MISSES_PER_SECOND = 4.0
    MISS_BURST = 8.0
    _MAX_ADDRESSES = 10_000

    def __init__(self, store: Store, refresh_seconds: float) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._keys: dict[str, Principal] | None = None
        self._loaded_from = -math.inf  # monotonic start of the read the copy comes from
        self._reading: asyncio.Task[bool] | None = None
        self._reading_since = -math.inf  # monotonic start of the latest read attempt
        self._misses: dict[str, tuple[float, float]] = {}  # client address -> (allowance, at)

    async def resolve(self, key: str, client: str = "") -> Principal:
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            raise Unauthenticated("invalid API key")
        digest = hash_key(key)
        arrived = time.monotonic()
        if arrived - self._loaded_from > self._refresh_seconds:
            self._start_read()
        if self._keys is None or (digest not in self._keys and self._may_wait(client, arrived)):
            await self._read_since(arrived)
        principal = (self._keys or {}).get(digest)
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        return principal

    def _may_wait(self, client: str, now: float) -> bool:
        """A token bucket per client address for unknown keys that wait for a fresh read."""
        allowance, at = self._misses.get(client, (self.MISS_BURST, now))
        allowance = min(self.MISS_BURST, allowance + (now - at) * self.MISSES_PER_SECOND)
        if len(self._misses) >= self._MAX_ADDRESSES:
            self._misses.clear()  # a spread-out flood: forget, rather than grow
        self._misses[client] = (allowance - 1 if allowance >= 1 else allowance, now)
        return allowance >= 1

    def _start_read(self) -> None:
        if self._reading is None or self._reading.done():
            self._reading_since = time.monotonic()
            self._reading = asyncio.create_task(self._read())

    async def _read_since(self, arrived: float) -> None:
        """Wait until the copy comes from a read that started after `arrived`, or such a read failed."""
        while self._loaded_from < arrived:
            if self._reading is None or self._reading.done():
                wait = self._reading_since + self.MIN_READ_GAP - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # another request may have started a read meanwhile
                self._start_read()
            assert self._reading is not None
            started, ok = self._reading_since, await asyncio.shield(self._reading)
            if started >= arrived and not ok:
                if self._keys is None:
                    raise Unavailable("cannot verify the API key right now: the key store is unreachable")
                return  # the store is down: answer from the copy we have

    async def _read(self) -> bool:
        started = time.monotonic()
        try:
            rows = await self._store.aquery(
                f"SELECT key_hash, tenant_id, key_prefix, scopes FROM {self._store.database}.api_keys FINAL "
                "WHERE revoked = 0"
            )
        except StoreError as exc:
            log.warning("cannot read API keys, keeping the previous copy: %s", exc)
            return False
        self._keys = {
            r["key_hash"]: Principal(r["tenant_id"], r["key_prefix"], frozenset(r["scopes"])) for r in rows.to_dicts()
        }
        self._loaded_from = started
        return True
