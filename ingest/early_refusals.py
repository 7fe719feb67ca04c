"""Refusing, before its body is read, a request that cannot pass. Once a key's last charge left a
bucket that no request can draw from yet (its request bucket under one unit, or a span bucket in
debt), this process answers its requests 429 until that bucket has refilled, without reading or
decoding their bodies or asking Redis: a client that ignores Retry-After costs next to nothing.

The wait is a lower bound: buckets refill only with time, and other replicas only draw from them.
A request that this process lets through is then charged as usual."""

from __future__ import annotations

import time

from ingest.ratelimit import Quota


class EarlyRefusals:
    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[Quota, float]] = {}  # (tenant, key) -> its last quota, when

    def note(self, tenant_id: str, key_id: str, quota: Quota) -> None:
        self._last[(tenant_id, key_id)] = (quota, time.monotonic())

    def refusal(self, tenant_id: str, key_id: str) -> Quota | None:
        """The key's last quota as it stands now, if no request of the key can pass yet."""
        found = self._last.get((tenant_id, key_id))
        if found is None:
            return None
        quota, at = found
        now = quota.aged(time.monotonic() - at)
        return None if now.allowed else now
