"""Each ingest process's copy of the tenants' rate limits (set through the admin API, stored in
`tenant_rate_limits`), re-read in the background every `rate_limit_refresh_seconds`: a request
never waits for the store, and a change reaches every ingest process within that time."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from schemas.rate_limits import RateLimits, read_rate_limits

log = logging.getLogger(__name__)


class TenantLimits:
    """A tenant's limits: its own values over the settings' defaults. Until the first read has
    answered (or while the store is down at start), every tenant has the defaults."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._defaults = RateLimits.defaults(settings)
        self._refresh_seconds = settings.rate_limit_refresh_seconds
        self._limits: dict[str, RateLimits] = {}
        self._read_at = -math.inf  # monotonic start of the latest read, answered or not
        self._reading: asyncio.Task[None] | None = None

    def get(self, tenant_id: str) -> RateLimits:
        if time.monotonic() - self._read_at >= self._refresh_seconds and (self._reading is None or self._reading.done()):
            self._read_at = time.monotonic()
            self._reading = asyncio.create_task(self._read())
        return self._limits.get(tenant_id, self._defaults)

    async def _read(self) -> None:
        try:
            rows = await asyncio.to_thread(read_rate_limits, self._store)
        except StoreError as exc:  # tried again after the interval, not on every request
            log.warning("cannot read tenant rate limits, keeping the previous ones: %s", exc)
            return
        self._limits = {tenant: self._defaults.overridden_by(own) for tenant, own in rows.items()}
