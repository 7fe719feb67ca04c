"""Rate limits: what one tenant's buckets hold and refill at, and the one reader and writer of the
`tenant_rate_limits` rows the admin API sets (ingest reads them, the query API writes them).

Each ingest request costs one unit of a per-key and a per-tenant request bucket, and its span
count (SDK events: its event count) of a per-key and a per-tenant span bucket. A bucket holds
`rate * burst_seconds` units (at least one) and refills at `rate` per second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from typing import Any

from llmscope.settings import Settings
from llmscope.storage import Store

@dataclass(frozen=True, slots=True)
class RateLimits:
    key_requests_per_second: float
    key_spans_per_second: float
    tenant_requests_per_second: float
    tenant_spans_per_second: float
    burst_seconds: float

    @classmethod
    def defaults(cls, settings: Settings) -> RateLimits:
        """The limits of a tenant that set none of its own."""
        return cls(
            key_requests_per_second=settings.rate_limit_per_key,
            key_spans_per_second=settings.rate_limit_spans_per_key,
            tenant_requests_per_second=settings.rate_limit_per_tenant,
            tenant_spans_per_second=settings.rate_limit_spans_per_tenant,
            burst_seconds=settings.rate_limit_burst_seconds,
        )

    def overridden_by(self, overrides: dict[str, float | None]) -> RateLimits:
        """These limits with a tenant's own values (None: keep this one) in place."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


# The columns of `tenant_rate_limits` and the fields of the admin API, in this order.
LIMIT_FIELDS = tuple(f.name for f in fields(RateLimits))


def read_rate_limits(store: Store, tenant_id: str | None = None) -> dict[str, dict[str, float | None]]:
    """Tenant -> its own values (None where it follows the default), for every tenant that set any."""
    where = "WHERE tenant_id = {t:String}" if tenant_id is not None else ""
    rows = store.query(
        f"SELECT tenant_id, {', '.join(LIMIT_FIELDS)} FROM {store.database}.tenant_rate_limits FINAL {where}",
        {"t": tenant_id} if tenant_id is not None else None,
    ).to_dicts()
    return {r["tenant_id"]: {f: r[f] for f in LIMIT_FIELDS} for r in rows}


def write_rate_limits(store: Store, tenant_id: str, overrides: dict[str, float | None]) -> None:
    """Replace the tenant's own values: a field absent or None follows the default again."""
    now = time.time_ns()
    row: dict[str, Any] = {f: overrides.get(f) for f in LIMIT_FIELDS}
    row |= {"tenant_id": tenant_id, "updated_at": now / 1e9, "version": now}
    store.insert_rows(f"{store.database}.tenant_rate_limits", [row])
