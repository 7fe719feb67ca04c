"""Waiting on a condition instead of sleeping for a guess: the one helper async tests share."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Call (and await, if it is async) check() until its value is truthy; return that value, or
    fail with the last one after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)
