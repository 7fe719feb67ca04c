"""API keys: generation, SHA-256 hashing, lookup with a short-lived cache, scope checks."""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from dataclasses import dataclass

from llmscope.errors import Forbidden, Unauthenticated, Unavailable
from llmscope.storage import Store, StoreError

KEY_PREFIX = "lls_"
_ALPHABET = string.ascii_letters + string.digits
SCOPES = frozenset({"ingest", "read", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    key_prefix: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


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
    """Resolves a presented key to its tenant. Positive and negative answers are cached briefly
    so a flood of requests costs one store lookup per key per TTL; revocation takes effect within
    the TTL (and at once where `forget` is called)."""

    def __init__(self, store: Store, cache_seconds: float) -> None:
        self._store = store
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, key: str) -> Principal:
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            raise Unauthenticated("invalid API key")
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or hit[0] < now:
            principal = await self._lookup(digest)
            if len(self._cache) > 100_000:
                self._cache.clear()
            hit = (now + self._ttl, principal)
            self._cache[digest] = hit
        if hit[1] is None:
            raise Unauthenticated("invalid or revoked API key")
        return hit[1]

    def forget(self, key: str) -> None:
        self._cache.pop(hash_key(key), None)

    async def _lookup(self, digest: str) -> Principal | None:
        try:
            rows = await self._store.aquery(
                f"SELECT tenant_id, key_prefix, scopes, revoked FROM {self._store.database}.api_keys FINAL "
                "WHERE key_hash = {h:String}",
                {"h": digest},
            )
        except StoreError as exc:
            raise Unavailable(f"cannot verify the API key right now: {exc}") from None
        if rows.height == 0 or rows["revoked"][0]:
            return None
        return Principal(rows["tenant_id"][0], rows["key_prefix"][0], frozenset(rows["scopes"][0]))
