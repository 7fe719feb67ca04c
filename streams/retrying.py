"""Retrying a worker step whose failure is transient (broker down, store down, a worker process
died) until it succeeds: the agent waits instead of acknowledging work it has not done, which is
the back-pressure a slow or absent dependency should cause."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retrying(what: str, attempt: Callable[[], Awaitable[T]], max_backoff: float = 10.0) -> T:
    """Await attempt() until it returns, with jittered exponential backoff between failures."""
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
