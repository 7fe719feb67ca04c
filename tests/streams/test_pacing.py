"""The idle pacer of the leader's store polls (streams/pacing.py), on a clock the test moves."""

from __future__ import annotations

import asyncio

from streams.pacing import IdlePacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Poll:
    """A poll that reports `busy` and counts its runs; `during` is called inside the run."""

    def __init__(self) -> None:
        self.runs = 0
        self.busy = False
        self.during = lambda: None

    async def __call__(self) -> bool:
        self.runs += 1
        self.during()
        return self.busy


async def ticks(pacer: IdlePacer, poll: Poll, clock: Clock, seconds: int) -> int:
    """One tick a second for `seconds`; how many of them ran the poll."""
    before = poll.runs
    for _ in range(seconds):
        clock.now += 1
        await pacer.poll(poll)
    return poll.runs - before


async def test_an_idle_poll_runs_once_per_idle_period_and_every_tick_while_busy() -> None:
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(10.0, clock)
    assert await pacer.poll(poll)  # the first tick always looks
    assert await ticks(pacer, poll, clock, 30) == 3  # then every 10 s while nothing is found
    poll.busy = True
    await ticks(pacer, poll, clock, 10)  # at most 10 s until the next look finds the work...
    assert await ticks(pacer, poll, clock, 5) == 5  # ...and from then on every tick looks
    poll.busy = False
    assert await ticks(pacer, poll, clock, 5) == 1  # the first empty look starts the idle period again


async def test_a_wake_makes_the_next_tick_look() -> None:
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(10.0, clock)
    await ticks(pacer, poll, clock, 3)
    pacer.wake()
    assert await ticks(pacer, poll, clock, 1) == 1
    assert await ticks(pacer, poll, clock, 5) == 0  # one wake, one look


async def test_a_wake_during_a_run_is_kept_for_the_next_tick() -> None:
    """Work stored while a poll runs may be missed by that poll: it must not be left for the idle period."""
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(10.0, clock)
    poll.during = pacer.wake
    await ticks(pacer, poll, clock, 1)
    poll.during = lambda: None
    assert await ticks(pacer, poll, clock, 1) == 1
    assert await ticks(pacer, poll, clock, 5) == 0


async def test_a_wake_for_later_looks_once_that_time_has_come() -> None:
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(60.0, clock)
    await ticks(pacer, poll, clock, 1)
    pacer.wake(3.5)  # a retry due in 3.5 s
    pacer.wake(7.0)
    assert [await ticks(pacer, poll, clock, 1) for _ in range(8)] == [0, 0, 0, 1, 0, 0, 1, 0]


async def test_a_later_wake_outlives_looks_made_before_its_time() -> None:
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(60.0, clock)
    await ticks(pacer, poll, clock, 1)
    pacer.wake(5.0)
    pacer.wake()  # something else is looked at first; the retry is still due in 4 s
    assert [await ticks(pacer, poll, clock, 1) for _ in range(6)] == [1, 0, 0, 0, 1, 0]


async def test_a_failed_poll_is_tried_again_at_the_next_tick() -> None:
    clock = Clock()
    pacer = IdlePacer(10.0, clock)
    calls = 0

    async def failing() -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("store down")
        return False

    await pacer.poll(failing)
    clock.now += 10
    try:
        await pacer.poll(failing)
    except ConnectionError:
        pass
    clock.now += 1
    assert await pacer.poll(failing) and calls == 3


async def test_concurrent_wakes_from_other_tasks_are_not_lost() -> None:
    clock, poll = Clock(), Poll()
    pacer = IdlePacer(10.0, clock)

    async def slow() -> bool:
        await asyncio.sleep(0.01)  # the spans agent stores marks while the compactor runs
        return False

    async def writer() -> None:
        pacer.wake()

    await asyncio.gather(pacer.poll(slow), writer())
    clock.now += 1
    assert await pacer.poll(poll)
