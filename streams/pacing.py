"""When a leader's store poll may skip its tick.

The minute compactor and the webhook delivery loop looked at the store every second for new work:
about 40 % of an idle `up`'s CPU. An `IdlePacer` keeps the one-second cadence while there is work,
and once a poll finds none, skips ticks for up to `idle_seconds`. What this process writes wakes it
at once: the spans agent after storing rollup marks; new outbox rows, from the webhook fan-out or
the query API (llmscope/wakeups.py); a delivery scheduling its retry, at its due time. So in `up`,
and on a single worker, nothing waits longer than before. In a cluster, work another process wrote
is found within `idle_seconds` once the leader has gone idle.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Awaitable, Callable


class IdlePacer:
    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle_seconds
        self._clock = clock
        self._next = 0.0  # the first tick polls
        self._woken = self._seen = 0  # wakes counted, and how many the last poll took in
        self._later: list[float] = []  # wakes set for a time to come (a heap)

    def wake(self, delay: float = 0.0) -> None:
        """Poll at the next tick, or at the first tick `delay` seconds from now. Without a delay it
        may be called from any thread (the count only has to change); with one, from the loop's."""
        if delay <= 0:
            self._woken += 1
        else:
            heapq.heappush(self._later, self._clock() + delay)

    async def poll(self, run: Callable[[], Awaitable[bool]]) -> bool:
        """Call `run` (it says whether there may be more to do) unless this tick may be skipped;
        returns whether it was called. A wake during the run is not lost: it counts for the next tick."""
        now = self._clock()
        later = bool(self._later) and self._later[0] <= now
        if now < self._next and self._woken == self._seen and not later:
            return False
        self._seen = self._woken
        while self._later and self._later[0] <= now:
            heapq.heappop(self._later)
        self._next = now  # a run that raises is tried again at the next tick
        busy = await run()
        self._next = self._clock() + (0.0 if busy else self._idle)
        return True
