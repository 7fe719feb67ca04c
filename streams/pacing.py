"""When a leader's store poll may skip its tick.

The minute compactor looked at the store every second for new rollup marks, most of an idle `up`'s
work. An `IdlePacer` keeps the one-second cadence while there is work, and once a poll finds none,
skips ticks for up to `idle_seconds`. What this process stores wakes it at once (the spans agent,
after storing rollup marks). So in `up`, and on a single worker, nothing waits longer than before.
In a cluster, work another worker stored is found within `idle_seconds` once the leader is idle.

The webhook delivery loop still looks every second: a test webhook's outbox row is written by the
query API, which in production is another process that cannot wake the worker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class IdlePacer:
    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle_seconds
        self._clock = clock
        self._next = 0.0  # the first tick polls
        self._woken = self._seen = 0  # wakes counted, and how many the last poll took in

    def wake(self) -> None:
        """Poll at the next tick."""
        self._woken += 1

    async def poll(self, run: Callable[[], Awaitable[bool]]) -> bool:
        """Call `run` (it says whether there may be more to do) unless this tick may be skipped;
        returns whether it was called. A wake during the run is not lost: it counts for the next tick."""
        now = self._clock()
        if now < self._next and self._woken == self._seen:
            return False
        self._seen = self._woken
        self._next = now  # a run that raises is tried again at the next tick
        busy = await run()
        self._next = self._clock() + (0.0 if busy else self._idle)
        return True
