"""Tenants and their API keys as the admin API and the CLI manage them: the one reader and writer of
the `tenants`, `api_keys` and `api_key_usage` rows (auth.py creates keys and reads the copy that
authenticates requests).

A key is named by its id, the first 16 hex digits of its SHA-256 (what is stored; the key itself
never is), so old keys have an id too. Rows are rewritten with a newer version (ReplacingMergeTree)
and read with FINAL. Rotation makes a new key with the old one's tenant, name, scopes and expiry,
and gives the old key an expiry at the end of the grace period: both work until then.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from llmscope.auth import check_scopes, ensure_tenant, generate_key, key_row, now_ms
from llmscope.storage import Store

TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_ID = re.compile(r"^[0-9a-f]{16}$")

_KEY_COLUMNS = """substring(k.key_hash, 1, 16) AS key_id, k.key_hash AS key_hash, k.key_prefix AS key_prefix,
    k.tenant_id AS tenant_id, k.name AS name, k.scopes AS scopes, k.created_at AS created_at,
    k.expires_at AS expires_at, k.revoked AS revoked, k.version AS version"""


def _version(previous: int) -> int:
    return max(now_ms(), previous + 1)


def list_tenants(store: Store, only: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE tenant_id = {t:String}" if only is not None else ""
    return store.query(
        f"SELECT tenant_id, name, created_at, disabled FROM {store.database}.tenants FINAL {where} ORDER BY tenant_id",
        {"t": only} if only is not None else None,
    ).to_dicts()


def get_tenant(store: Store, tenant_id: str) -> dict[str, Any] | None:
    found = list_tenants(store, tenant_id)
    return found[0] if found else None


def create_tenant(store: Store, tenant_id: str, name: str) -> dict[str, Any] | None:
    """The new tenant, or None if `tenant_id` exists already."""
    if get_tenant(store, tenant_id) is not None:
        return None
    ensure_tenant(store, tenant_id)
    if name != tenant_id:
        return update_tenant(store, tenant_id, name=name)
    return get_tenant(store, tenant_id)


def update_tenant(
    store: Store, tenant_id: str, *, name: str | None = None, disabled: bool | None = None
) -> dict[str, Any] | None:
    """The tenant as changed, or None if there is no such tenant."""
    row = store.query(
        f"SELECT tenant_id, name, created_at, disabled, version FROM {store.database}.tenants FINAL "
        "WHERE tenant_id = {t:String}",
        {"t": tenant_id},
    ).to_dicts()
    if not row:
        return None
    changed = row[0] | {"version": _version(row[0]["version"])}
    if name is not None:
        changed["name"] = name
    if disabled is not None:
        changed["disabled"] = int(disabled)
    changed["created_at"] = changed["created_at"].timestamp()
    store.insert_rows(f"{store.database}.tenants", [changed])
    return get_tenant(store, tenant_id)


def list_keys(store: Store, tenant_id: str | None) -> list[dict[str, Any]]:
    """Every key of `tenant_id` (of all tenants for None), newest first, with when it was last used."""
    where = "WHERE k.tenant_id = {t:String}" if tenant_id is not None else ""
    return _keys(store, where, {"t": tenant_id} if tenant_id is not None else {})


def find_key(store: Store, key_id: str, tenant_id: str | None) -> dict[str, Any] | None:
    """The key with this id, if it belongs to `tenant_id` (to any tenant for None)."""
    where = "WHERE startsWith(k.key_hash, {id:String})"
    params: dict[str, Any] = {"id": key_id}
    if tenant_id is not None:
        where += " AND k.tenant_id = {t:String}"
        params["t"] = tenant_id
    found = _keys(store, where, params)
    return found[0] if len(found) == 1 else None


def _keys(store: Store, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    db = store.database
    return store.query(
        f"""
        SELECT {_KEY_COLUMNS}, u.last_used_at AS last_used_at
        FROM (SELECT * FROM {db}.api_keys FINAL) AS k
        LEFT JOIN (SELECT key_hash, max(last_used_at) AS last_used_at FROM {db}.api_key_usage GROUP BY key_hash) AS u
            ON u.key_hash = k.key_hash
        {where}
        ORDER BY k.created_at DESC, k.key_hash
        """,
        params,
    ).to_dicts()


def _rewrite(store: Store, row: dict[str, Any], **changes: Any) -> None:
    kept = {c: row[c] for c in ("key_hash", "key_prefix", "tenant_id", "name", "scopes", "revoked")}
    written = kept | {
        "created_at": row["created_at"].timestamp(),
        "expires_at": row["expires_at"].timestamp() if row["expires_at"] else None,
        "version": _version(row["version"]),
    } | changes
    store.insert_rows(f"{store.database}.api_keys", [written])


def new_key(
    store: Store, tenant_id: str, name: str, scopes: list[str], expires_at: datetime | None
) -> tuple[str, dict[str, Any]]:
    """A new key (shown once) and its row, as listed."""
    key = generate_key()
    ensure_tenant(store, tenant_id)
    row = key_row(key, tenant_id, name, check_scopes(scopes), expires_at)
    store.insert_rows(f"{store.database}.api_keys", [row])
    found = find_key(store, str(row["key_hash"])[:16], tenant_id)
    assert found is not None
    return key, found


def revoke_key(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    if not row["revoked"]:
        _rewrite(store, row, revoked=1)
    return find_key(store, row["key_id"], row["tenant_id"]) or row


def rotate_key(store: Store, row: dict[str, Any], grace: timedelta) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(new key, its row, the old key's row): the old key now expires at the end of `grace`."""
    key, fresh = new_key(store, row["tenant_id"], row["name"], list(row["scopes"]), row["expires_at"])
    ends = datetime.now(UTC) + grace
    if row["expires_at"] is None or row["expires_at"] > ends:
        _rewrite(store, row, expires_at=ends.timestamp())
    return key, fresh, find_key(store, row["key_id"], row["tenant_id"]) or row
