"""API keys, principals and scopes: the key format, SHA-256 hashing, lookup from an in-memory copy of
the keys table, scope checks. Plumbing, because every role that faces a client needs it: ingest
and query (llmscope/http.py authenticates their requests), the live stream, and the CLI and `up`,
which create keys.

Key format: `lls_` + 30 random base62 characters (≈178 bits) + 6 base62 characters of the CRC32 of
the random part, 40 characters in all, as GitHub's tokens are made. A secret scanner recognises a
leaked key by the prefix and confirms it by the checksum without asking us; a mistyped or truncated
key is refused here without a store lookup. Keys made before the checksum (`lls_` + 40 random
characters) have no checksum and are looked up as before.

Scopes: `ingest` (send spans and events), `read` (query), `alerts` (write alert rules), `admin`
(manage the key's own tenant: its keys, name, prices, PII policy, alert rules, audit log), `superadmin` (a platform key: manage every tenant;
implies `admin`; made only by the CLI's `create-key`)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import string
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from llmscope.errors import Forbidden, Unauthenticated, Unavailable
from llmscope.batched_writer import BatchedWriter
from llmscope.storage import Store, StoreError

KEY_PREFIX = "lls_"
_ALPHABET = string.digits + string.ascii_letters
_RANDOM_CHARS, _CHECKSUM_CHARS = 30, 6
KEY_LENGTH = len(KEY_PREFIX) + _RANDOM_CHARS + _CHECKSUM_CHARS
_LEGACY_LENGTH = len(KEY_PREFIX) + 40  # keys made before the checksum
# alerts: write alert rules (reading them needs read; admin may do both).
SCOPES = frozenset({"ingest", "read", "admin", "alerts", "superadmin"})
SUPERADMIN = "superadmin"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_prefix: str
    scopes: frozenset[str]
    expires_at: float | None = None  # Unix seconds; checked on every request, the copy may be older

    def require(self, scope: str, *alternatives: str) -> None:
        """Pass if the key holds `scope` or any of the alternatives (`superadmin` counts as `admin`)."""
        wanted = {scope, *alternatives}
        if not self.scopes & wanted and not ("admin" in wanted and SUPERADMIN in self.scopes):
            raise Forbidden(f"this API key lacks the {' or '.join(repr(s) for s in (scope, *alternatives))} scope")

    @property
    def superadmin(self) -> bool:
        return SUPERADMIN in self.scopes


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_CHARS)


def generate_key() -> str:
    """A prefixed key with a checksum over its random part (the format in the module docstring)."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    return KEY_PREFIX + random_part + _checksum(random_part)


def well_formed(key: str) -> bool:
    """The key could be one of ours: the prefix, base62, and either the checksum matches or it is a
    key from before the checksum. False means no store lookup is needed to refuse it."""
    body = key[len(KEY_PREFIX):]
    if not key.startswith(KEY_PREFIX) or not body.isascii() or not body.isalnum():
        return False
    if len(key) == _LEGACY_LENGTH:
        return True
    if len(key) != KEY_LENGTH:
        return False
    random_part, checksum = body[:_RANDOM_CHARS], body[_RANDOM_CHARS:]
    return hmac.compare_digest(_checksum(random_part), checksum)


def hash_key(key: str) -> str:
    # A fast hash is enough: keys are random, not human passwords.
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Known scopes only; `superadmin` brings `admin` with it."""
    chosen = frozenset(scopes)
    unknown = chosen - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    if not chosen:
        raise ValueError(f"give at least one scope of {sorted(SCOPES)}")
    return chosen | {"admin"} if SUPERADMIN in chosen else chosen


def now_ms() -> int:
    return int(time.time() * 1000)


def ensure_tenant(store: Store, tenant_id: str) -> None:
    """Create the tenant row if the tenant has none (a key may name a tenant nobody created);
    an existing tenant keeps its name and its disabled flag."""
    db = store.database
    found = store.query(f"SELECT count() AS n FROM {db}.tenants WHERE tenant_id = {{t:String}}", {"t": tenant_id})
    if not int(found["n"][0]):
        at = now_ms()
        store.insert_rows(
            f"{db}.tenants",
            [{"tenant_id": tenant_id, "name": tenant_id, "created_at": at / 1000, "disabled": 0, "version": at}],
        )


def key_row(key: str, tenant_id: str, name: str, scopes: frozenset[str], expires_at: datetime | None) -> dict[str, object]:
    at = now_ms()
    return {
        "key_hash": hash_key(key), "key_prefix": key[:12], "tenant_id": tenant_id, "name": name,
        "scopes": sorted(scopes), "created_at": at / 1000, "revoked": 0, "version": at,
        "expires_at": expires_at.timestamp() if expires_at else None,
    }  # fmt: skip


def create_key(
    store: Store, tenant_id: str, name: str, scopes: Iterable[str], expires_at: datetime | None = None
) -> str:
    """A new key for `tenant_id` (created if new), returned once: only its SHA-256 is stored."""
    chosen = check_scopes(scopes)
    key = generate_key()
    ensure_tenant(store, tenant_id)
    store.insert_rows(f"{store.database}.api_keys", [key_row(key, tenant_id, name, chosen, expires_at)])
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
    401 at once. A flood of random keys costs one small query a second in all, and holds nothing.

    The copy holds the keys that are not revoked and whose tenant is not disabled; expiry is checked
    on every request against the key's own time. `forget` drops keys or tenants from the copy at
    once (the admin API calls it on a revocation, in this process and, through Redis, in every
    other), and a copy from a read that started before a `forget` never brings them back."""

    MIN_READ_GAP = 0.25
    MISSES_PER_SECOND = 4.0
    MISS_BURST = 8.0
    _MAX_ADDRESSES = 10_000

    def __init__(self, store: Store, refresh_seconds: float, last_used_flush_seconds: float = 5.0) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._keys: dict[str, Principal] | None = None
        self._loaded_from = -math.inf  # monotonic start of the read the copy comes from
        self._reading: asyncio.Task[bool] | None = None
        self._reading_since = -math.inf  # monotonic start of the latest read attempt
        self._misses: dict[str, tuple[float, float]] = {}  # client address -> (allowance, at)
        self._forgotten: list[tuple[float, frozenset[str], frozenset[str]]] = []  # (at, key hashes, tenants)
        self._stale_since = -math.inf  # monotonic time of the latest `forget`
        # When each key was last used: one row per key per flush, never a write per request.
        self.last_used = BatchedWriter(store, "api_key_usage", last_used_flush_seconds)

    async def resolve(self, key: str, client: str = "") -> Principal:
        if not well_formed(key):
            raise Unauthenticated("invalid API key: not an LLMScope key, or mistyped (its checksum does not match)")
        digest = hash_key(key)
        arrived = time.monotonic()
        # A read in flight during a `forget` may predate what was changed: the next request re-reads.
        if arrived - self._loaded_from > self._refresh_seconds or self._loaded_from < self._stale_since:
            self._start_read()
        # The lookup is by the key's SHA-256, so its timing says nothing about the key's characters.
        if self._keys is None or (digest not in self._keys and self._may_wait(client, arrived)):
            await self._read_since(arrived)
        principal = (self._keys or {}).get(digest)
        if principal is None:
            raise Unauthenticated("invalid or revoked API key, or its tenant is disabled")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise Unauthenticated("this API key has expired")
        self.last_used.add(
            {"key_hash": digest, "tenant_id": principal.tenant_id, "last_used_at": time.time()}, key=digest
        )
        return principal

    def forget(self, key_hashes: Iterable[str] = (), tenants: Iterable[str] = ()) -> None:
        """Stop accepting these keys, and every key of these tenants, now; then re-read the copy
        (a tenant enabled again comes back with it)."""
        entry = (time.monotonic(), frozenset(key_hashes), frozenset(tenants))
        self._forgotten.append(entry)
        if self._keys is not None:
            self._keys = self._without(self._keys, [entry])
        self._stale_since = entry[0]
        self._start_read()

    @staticmethod
    def _without(keys: dict[str, Principal], forgotten: list[tuple[float, frozenset[str], frozenset[str]]]) -> dict[str, Principal]:
        gone = set().union(*(hashes for _, hashes, _ in forgotten))
        tenants = set().union(*(ts for _, _, ts in forgotten))
        return {h: p for h, p in keys.items() if h not in gone and p.tenant_id not in tenants}

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
        db = self._store.database
        try:
            rows = await self._store.aquery(
                f"""
                SELECT key_hash, tenant_id, key_prefix, scopes, toUnixTimestamp64Milli(expires_at) AS expires_ms
                FROM {db}.api_keys FINAL
                WHERE revoked = 0 AND tenant_id NOT IN (SELECT tenant_id FROM {db}.tenants FINAL WHERE disabled = 1)
                """
            )
        except StoreError as exc:
            log.warning("cannot read API keys, keeping the previous copy: %s", exc)
            return False
        keys = {
            r["key_hash"]: Principal(
                r["tenant_id"], r["key_prefix"], frozenset(r["scopes"]),
                None if r["expires_ms"] is None else r["expires_ms"] / 1000,
            )
            for r in rows.to_dicts()
        }  # fmt: skip
        # What was forgotten after this read began may still be in it; what was forgotten before is not.
        self._forgotten = [f for f in self._forgotten if f[0] >= started]
        self._keys = self._without(keys, self._forgotten)
        self._loaded_from = started
        return True

    async def close(self) -> None:
        await self.last_used.close()
