"""Tenant settings: what a tenant sets through the query API and the worker applies to its spans,
the rows that hold them, and the one reader and writer of each (so the row shapes have one owner).

- PII policy (`tenant_pii_policy`): one `PiiPolicy` per tenant that set one; the others get the
  settings' default.
- Price overrides (`price_overrides`): a tenant's own prices for a model, keyed by
  `override_key` (provider canonicalised, model lowercased), so `OpenAI/GPT-4o` and
  `openai/gpt-4o` are one override that a later write replaces. A removal is a tombstone row
  (`deleted = 1`) that keeps the prices it removed.
- The price sources a span records (`price_source`): the bundled table or a tenant's override.

Rows are versioned by the time of the write (ReplacingMergeTree): the newest write wins.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import genai_prices

from llmscope.storage import Store
from schemas.providers import normalise_provider

# genai-prices is used from its bundled snapshot only: UpdatePrices (which downloads) is never started.
PRICE_SOURCE = f"genai-prices@{genai_prices.__version__}"
OVERRIDE_SOURCE = "tenant-override"


class PiiPolicy(StrEnum):
    OFF = "off"  # not scanned at all
    DETECT = "detect"  # counted, text unchanged
    MASK = "mask"  # replaced by `[EMAIL]`, `[PHONE]`, …
    HASH = "hash"  # replaced by `[EMAIL:<12 hex of HMAC-SHA256(key, canonical value)>]`
    DROP = "drop"  # the whole attribute (or status message) holding PII is removed


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A tenant's own prices in USD per million tokens.

    Absent optional prices fall back: cached_input and cache_write → input price,
    reasoning → output price (how providers without separate rates bill them).
    """

    model: str
    input_mtok: Decimal
    output_mtok: Decimal
    provider: str | None = None  # None: applies to the model whichever provider served it
    cached_input_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    reasoning_mtok: Decimal | None = None


OverrideKey = tuple[str, str]  # (normalised provider or "", lowercased model family or full ref)
PRICE_COLUMNS = ("input_mtok", "output_mtok", "cached_input_mtok", "cache_write_mtok", "reasoning_mtok")


def override_key(provider: str | None, model: str) -> OverrideKey:
    """How an override is stored and looked up: provider canonicalised ("" for any), model lowercased."""
    return normalise_provider(provider or ""), model.strip().lower()


def _version() -> tuple[int, str]:
    """(version, updated_at) of a write made now: nanoseconds, and seconds with milliseconds as text."""
    now = time.time_ns()
    return now, f"{now // 1_000_000_000}.{now // 1_000_000 % 1000:03d}"


# --- tenant_pii_policy ---


def read_pii_policies(store: Store) -> dict[str, PiiPolicy]:
    """Every tenant's own policy, by tenant."""
    rows = store.query(f"SELECT tenant_id, policy FROM {store.database}.tenant_pii_policy FINAL").to_dicts()
    return {r["tenant_id"]: PiiPolicy(r["policy"]) for r in rows}


def read_pii_policy(store: Store, tenant_id: str) -> PiiPolicy | None:
    """The tenant's own policy; None when it never set one."""
    rows = store.query(
        f"SELECT policy FROM {store.database}.tenant_pii_policy FINAL WHERE tenant_id = {{tenant:String}}",
        {"tenant": tenant_id},
    )
    return PiiPolicy(rows["policy"][0]) if rows.height else None


def write_pii_policy(store: Store, tenant_id: str, policy: PiiPolicy) -> None:
    version, updated_at = _version()
    row = {"tenant_id": tenant_id, "policy": policy.value, "updated_at": updated_at, "version": version}
    store.insert_rows(f"{store.database}.tenant_pii_policy", [row])


# --- price_overrides ---


def read_price_overrides(store: Store, tenant_id: str | None = None, key: OverrideKey | None = None) -> list[dict[str, Any]]:
    """Live (not removed) override rows, of every tenant or one, optionally of one key; ordered by
    tenant, provider and model. Prices are Decimals (None where absent)."""
    where, params = "", {}
    if tenant_id is not None:
        where += " AND tenant_id = {tenant:String}"
        params["tenant"] = tenant_id
    if key is not None:
        where += " AND provider = {provider:String} AND model = {model:String}"
        params.update(provider=key[0], model=key[1])
    sql = f"""
        SELECT tenant_id, provider, model, {", ".join(PRICE_COLUMNS)}, updated_at
        FROM {store.database}.price_overrides FINAL
        WHERE deleted = 0{where}
        ORDER BY tenant_id, provider, model
    """
    return store.query(sql, params).to_dicts()


def price_override(row: Mapping[str, Any]) -> PriceOverride:
    """The override a row holds."""
    return PriceOverride(
        model=row["model"],
        provider=row["provider"] or None,
        input_mtok=Decimal(row["input_mtok"]),
        output_mtok=Decimal(row["output_mtok"]),
        cached_input_mtok=_optional(row["cached_input_mtok"]),
        cache_write_mtok=_optional(row["cache_write_mtok"]),
        reasoning_mtok=_optional(row["reasoning_mtok"]),
    )


def _optional(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def write_price_override(
    store: Store, tenant_id: str, key: OverrideKey, prices: Mapping[str, Decimal | None], deleted: bool
) -> datetime:
    """Write one version of the override at `key` (a tombstone when `deleted`); returns its updated_at."""
    version, updated_at = _version()
    row = {
        "tenant_id": tenant_id,
        "provider": key[0],
        "model": key[1],
        **{c: None if prices[c] is None else format(prices[c], "f") for c in PRICE_COLUMNS},
        "deleted": int(deleted),
        "updated_at": updated_at,
        "version": version,
    }
    store.insert_rows(f"{store.database}.price_overrides", [row])
    return datetime.fromtimestamp(version // 1_000_000 / 1000, tz=UTC)
