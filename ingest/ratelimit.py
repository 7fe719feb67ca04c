"""Token buckets per API key and per tenant: Redis (atomic Lua) in production, in-process in `up`."""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from llmscope.errors import RateLimited
from llmscope.metrics import RATE_LIMIT_DECISIONS
from llmscope.redis import FailOpenRedis

log = logging.getLogger(__name__)

# Both buckets are checked and charged in one atomic step; a denied request charges neither.
# Redis TIME is the single clock, so replicas of ingest share one notion of "now".
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, tokens = 0, {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local s = redis.call('HMGET', key, 'tokens', 'ts')
  local have = tonumber(s[1]) or burst
  local ts = tonumber(s[2]) or now
  have = math.min(burst, have + math.max(0, now - ts) * rate / 1000)
  if have < 1 then wait = math.max(wait, math.ceil((1 - have) * 1000 / rate)) end
  tokens[i] = have
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local left = tokens[i]
  if wait == 0 then left = left - 1 end
  redis.call('HSET', key, 'tokens', tostring(left), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end
return wait
"""


class RateLimiter(Protocol):
    async def acquire(self, tenant_id: str, key_id: str) -> None:
        """Charge one request or raise RateLimited with Retry-After in whole seconds."""


def _denied(wait_ms: float) -> RateLimited:
    RATE_LIMIT_DECISIONS.labels("limited").inc()
    return RateLimited(
        f"rate limit exceeded; retry in {wait_ms / 1000:.2f}s", retry_after=max(1, math.ceil(wait_ms / 1000))
    )


class LocalRateLimiter:
    def __init__(self, per_key: float, per_tenant: float, burst_seconds: float) -> None:
        self._limits = ((per_key, max(1.0, per_key * burst_seconds)), (per_tenant, max(1.0, per_tenant * burst_seconds)))
        self._buckets: dict[str, tuple[float, float]] = {}

    async def acquire(self, tenant_id: str, key_id: str) -> None:
        now = time.monotonic()
        names = (f"key:{key_id}", f"tenant:{tenant_id}")
        levels, wait = [], 0.0
        for name, (rate, burst) in zip(names, self._limits):
            tokens, ts = self._buckets.get(name, (burst, now))
            tokens = min(burst, tokens + (now - ts) * rate)
            if tokens < 1:
                wait = max(wait, (1 - tokens) * 1000 / rate)
            levels.append(tokens)
        for name, tokens in zip(names, levels):
            self._buckets[name] = (tokens - (0 if wait else 1), now)
        if wait:
            raise _denied(wait)
        RATE_LIMIT_DECISIONS.labels("allowed").inc()


class RedisRateLimiter:
    """Fails open when Redis is unreachable (llmscope/redis.py): ingest keeps accepting and logs,
    because losing telemetry is worse than briefly exceeding a quota."""

    def __init__(self, url: str, per_key: float, per_tenant: float, burst_seconds: float) -> None:
        self._redis = FailOpenRedis(url, what="rate limiter", instead="allowing requests", log=log)
        self._script = self._redis.client.register_script(_LUA)
        self._args = [per_key, max(1.0, per_key * burst_seconds), per_tenant, max(1.0, per_tenant * burst_seconds)]

    async def acquire(self, tenant_id: str, key_id: str) -> None:
        # One hash tag per tenant keeps both keys in one Redis Cluster slot.
        keys = [f"llmscope:rl:{{{tenant_id}}}:key:{key_id}", f"llmscope:rl:{{{tenant_id}}}:tenant"]
        wait = await self._redis.run(lambda: self._script(keys=keys, args=self._args), None)
        if wait is None:
            RATE_LIMIT_DECISIONS.labels("fail_open").inc()
        elif int(wait):
            raise _denied(int(wait))
        else:
            RATE_LIMIT_DECISIONS.labels("allowed").inc()

    async def close(self) -> None:
        await self._redis.close()
