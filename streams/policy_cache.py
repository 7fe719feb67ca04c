"""The worker's copy of the tenants' enrichment policies (PII policy, price overrides): loaded from
the store and refreshed on an interval, so a change made through the API applies to spans arriving
after it. What it holds (`TenantPolicies`) is plain data the pure stages take."""

from __future__ import annotations

import asyncio
import logging
import time

from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.tenant_settings import PiiPolicy, PriceOverride, price_override, read_pii_policies, read_price_overrides
from streams.stages.enrich import TenantPolicies

log = logging.getLogger(__name__)


def load_policies(store: Store, settings: Settings) -> TenantPolicies:
    pii = read_pii_policies(store)
    prices: dict[str, list[PriceOverride]] = {}
    for row in read_price_overrides(store):
        prices.setdefault(row["tenant_id"], []).append(price_override(row))
    secret = settings.pii_hash_key.get_secret_value().encode() if settings.pii_hash_key else b""
    return TenantPolicies(
        default_pii=PiiPolicy(settings.pii_policy),
        hash_secret=secret or f"llmscope:{store.database}".encode(),
        pii=pii,
        prices=prices,
    )


class PolicyCache:
    """The last policies read; a failed refresh keeps them (and retries), never blocks the stream.

    `loaded_at` is the `time.monotonic()` at which the read behind the current policies began,
    so a change committed before that instant is in them. It only grows. A call of `current()`
    made `policy_refresh_seconds` or more after a change therefore always returns policies that
    include it: the promise behind LLMSCOPE_POLICY_REFRESH_SECONDS, and what tests wait on.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store, self._settings = store, settings
        self._current: TenantPolicies | None = None
        self.loaded_at = float("-inf")

    async def current(self) -> TenantPolicies:
        if self._current is None or time.monotonic() - self.loaded_at >= self._settings.policy_refresh_seconds:
            await self._refresh()
        # Never read yet (the store is down at start): the settings' default, with no overrides.
        return self._current or TenantPolicies(PiiPolicy(self._settings.pii_policy), b"")

    async def _refresh(self) -> None:
        started = time.monotonic()
        try:
            policies = await asyncio.to_thread(load_policies, self._store, self._settings)
        except StoreError as exc:
            log.warning("cannot refresh tenant policies, keeping the previous ones: %s", exc)
            return
        if started > self.loaded_at:  # of two overlapping reads, the later one wins
            self._current, self.loaded_at = policies, started
