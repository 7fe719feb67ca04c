"""Token buckets per API key and per tenant, for requests and for spans: Redis (atomic Lua) in
production, in-process in `up`; and the IETF RateLimit-Policy / RateLimit headers that report them
(draft-ietf-httpapi-ratelimit-headers-11).

A request costs one unit of each request bucket and its span count (SDK events: its event count)
of each span bucket, so one request of 10,000 spans is not one unit. A request larger than a span
bucket passes when that bucket is full and leaves it in debt: later requests wait until the debt
is paid, and the rate over time stays the limit.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from starlette.types import Scope

from llmscope.errors import RateLimited
from llmscope.http import AnswerHeaders
from llmscope.redis import FailOpenRedis
from schemas.rate_limits import RateLimits

log = logging.getLogger(__name__)

# All buckets are checked and charged in one atomic step; a denied request charges none.
# Redis TIME is the single clock, so replicas of ingest share one notion of "now".
# One hash per partition (the key, the tenant) holds its two buckets: requests (r) and spans (s).
# ARGV holds (rate per second, size, cost) per bucket, in the order of `buckets()`. Returns the
# wait in ms (0: allowed) and each bucket's level after the request, as text (Redis would
# truncate a Lua number to an integer).
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, levels = 0, {}
for i, key in ipairs(KEYS) do
  local s = redis.call('HMGET', key, 'r', 's', 'ts')
  local ts = tonumber(s[3]) or now
  for j = 1, 2 do
    local n = 2 * (i - 1) + j
    local rate, size, cost = tonumber(ARGV[3*n-2]), tonumber(ARGV[3*n-1]), tonumber(ARGV[3*n])
    local have = math.min(size, (tonumber(s[j]) or size) + math.max(0, now - ts) * rate / 1000)
    local need = math.min(cost, size)
    if have < need then wait = math.max(wait, math.ceil((need - have) * 1000 / rate)) end
    levels[n] = have
  end
end
local out = {wait}
for i, key in ipairs(KEYS) do
  local full_in = 0
  for j = 1, 2 do
    local n = 2 * (i - 1) + j
    local rate, size, cost = tonumber(ARGV[3*n-2]), tonumber(ARGV[3*n-1]), tonumber(ARGV[3*n])
    if wait == 0 then levels[n] = levels[n] - cost end
    full_in = math.max(full_in, math.ceil((size - levels[n]) * 1000 / rate))
    out[n + 1] = tostring(levels[n])
  end
  redis.call('HSET', key, 'r', tostring(levels[2*i-1]), 's', tostring(levels[2*i]), 'ts', now)
  redis.call('PEXPIRE', key, full_in + 1000)
end
return out
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket a request draws from: its policy name in the headers, whose it is (the key's
    prefix or the tenant), its refill rate per second, its size, what this request costs and the
    least any request costs (one request; no spans)."""

    policy: str
    partition: str
    rate: float
    size: float
    cost: int
    least: int


def buckets(tenant_id: str, key_id: str, spans: int, limits: RateLimits) -> list[Bucket]:
    """The key's requests and spans, then the tenant's (the order the Lua script expects)."""
    def size(rate: float) -> float:
        return max(1.0, rate * limits.burst_seconds)

    return [
        Bucket("key-requests", key_id, limits.key_requests_per_second, size(limits.key_requests_per_second), 1, 1),
        Bucket("key-spans", key_id, limits.key_spans_per_second, size(limits.key_spans_per_second), spans, 0),
        Bucket("tenant-requests", tenant_id, limits.tenant_requests_per_second, size(limits.tenant_requests_per_second), 1, 1),
        Bucket("tenant-spans", tenant_id, limits.tenant_spans_per_second, size(limits.tenant_spans_per_second), spans, 0),
    ]


def _wait_ms(spec: list[Bucket], levels: list[float]) -> float:
    """How long until every bucket holds what the request costs (a bucket smaller than that: full)."""
    return max(0.0, *((min(b.cost, b.size) - level) * 1000 / b.rate for b, level in zip(spec, levels)))


@dataclass(frozen=True, slots=True)
class Quota:
    """A request's verdict and what each bucket holds: after the request if it was allowed, as it
    was if not (a denied request charges nothing)."""

    buckets: list[Bucket]
    levels: list[float]
    wait_ms: float

    @property
    def allowed(self) -> bool:
        return self.wait_ms <= 0

    def aged(self, seconds: float) -> Quota:
        """This quota `seconds` later, for the next request whatever its size: the buckets refilled
        meanwhile, by this process's count (other replicas may have drawn from them too)."""
        spec = [replace(b, cost=b.least) for b in self.buckets]
        levels = [min(b.size, level + seconds * b.rate) for b, level in zip(spec, self.levels)]
        return Quota(spec, levels, _wait_ms(spec, levels))

    def denial(self) -> RateLimited:
        violated = [b.policy for b, level in zip(self.buckets, self.levels) if level < min(b.cost, b.size)]
        return RateLimited(
            f"rate limit exceeded ({', '.join(violated)}); retry in {self.wait_ms / 1000:.2f}s",
            retry_after=max(1, math.ceil(self.wait_ms / 1000)),
        )

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy: each bucket as `q` units per `w` seconds (its size, and the seconds it
        takes to fill from empty), partitioned (`pk`) by key or tenant. RateLimit: `r` units left
        now, `t` seconds until the bucket is full again. Span policies count spans (no registered
        quota unit names them, so `qu` is left out).

        Written with f-strings: every value is a fixed token-safe name, an integer or base64, and
        a structured-field serialiser cost five times the rest of the limiter per request (the
        tests parse the fields with one)."""
        policies, states = [], []
        for b, level in zip(self.buckets, self.levels):
            pk = base64.b64encode(b.partition.encode()).decode()
            policies.append(f'"{b.policy}";q={math.floor(b.size)};w={math.ceil(b.size / b.rate)};pk=:{pk}:')
            states.append(f'"{b.policy}";r={max(0, math.floor(level))};t={math.ceil(max(0.0, b.size - level) / b.rate)}')
        return {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(states)}


class RateLimiter(Protocol):
    async def acquire(self, tenant_id: str, key_id: str, spans: int, limits: RateLimits) -> Quota | None:
        """Charge one request and `spans` spans to the key's and the tenant's buckets, all or none.
        None: the limiter cannot tell (Redis unreachable), and the request goes through."""


class LocalRateLimiter:
    def __init__(self) -> None:
        self._levels: dict[str, tuple[float, float]] = {}  # bucket -> (level, monotonic time)

    async def acquire(self, tenant_id: str, key_id: str, spans: int, limits: RateLimits) -> Quota:
        now = time.monotonic()
        spec = buckets(tenant_id, key_id, spans, limits)
        names = [f"{tenant_id}:{b.policy}:{b.partition}" for b in spec]
        levels = []
        for name, b in zip(names, spec):
            level, at = self._levels.get(name, (b.size, now))
            levels.append(min(b.size, level + (now - at) * b.rate))
        wait = _wait_ms(spec, levels)
        if not wait:
            levels = [level - b.cost for level, b in zip(levels, spec)]
        for name, level in zip(names, levels):
            self._levels[name] = (level, now)
        return Quota(spec, levels, wait)


class RedisRateLimiter:
    """Fails open when Redis is unreachable (llmscope/redis.py): ingest keeps accepting and logs,
    because losing telemetry is worse than briefly exceeding a quota."""

    def __init__(self, url: str) -> None:
        self._redis = FailOpenRedis(url, what="rate limiter", instead="allowing requests", log=log)
        self._script = self._redis.client.register_script(_LUA)

    async def acquire(self, tenant_id: str, key_id: str, spans: int, limits: RateLimits) -> Quota | None:
        spec = buckets(tenant_id, key_id, spans, limits)
        # One hash tag per tenant keeps all its buckets in one Redis Cluster slot.
        keys = [f"llmscope:rl:{{{tenant_id}}}:key:{key_id}", f"llmscope:rl:{{{tenant_id}}}:tenant"]
        args = [x for b in spec for x in (b.rate, b.size, b.cost)]
        reply = await self._redis.run(lambda: self._script(keys=keys, args=args), None)
        if reply is None:
            return None
        return Quota(spec, [float(level) for level in reply[1:]], float(reply[0]))

    async def close(self) -> None:
        await self._redis.close()


class RateLimitHeaders(AnswerHeaders):
    """The quota left, on the answer to every charged request, a 200 as well as a 429: the routes
    leave `Quota.headers()` on the request's state (`rate_limit_headers`)."""

    def headers(self, scope: Scope) -> Mapping[str, str]:
        return scope.get("state", {}).get("rate_limit_headers") or {}
