"""Retrying a step whose failure is transient (the broker or the store is down, a worker process
died) until it succeeds: the agents' back-pressure, instead of dropping or acknowledging what failed."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], max_backoff: float = 10.0) -> T:
    """Retry a step whose failure is transient (broker down, worker process died) forever."""
    delay = 0.2
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed, retrying in %.1fs: %r", what, delay, exc)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(max_backoff, delay * 2)
