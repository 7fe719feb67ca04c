"""The worker's batcher: acknowledgements never leave a gap, whatever order batches finish in."""

from __future__ import annotations

import asyncio
import time

from streams.batching import Batcher
from tests.waiting import eventually


async def _settle() -> None:
    """Let every task that can run, run: what must not happen by now would have happened."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_later_batch_that_finishes_first_waits_to_be_acknowledged() -> None:
    first_may_finish = asyncio.Event()
    acked: list[int] = []
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        if items[0] == 0:
            await first_may_finish.wait()
        flushed.append(items)

    batcher: Batcher[int] = Batcher(flush, lambda i: asyncio.sleep(0, acked.append(i)), max_items=2, max_seconds=60)
    for i in range(4):
        await batcher.add(i)
    await eventually(lambda: flushed == [[2, 3]], timeout=5, interval=0.01)
    await _settle()
    assert acked == []  # batch [2, 3] is stored, but [0, 1] is not: nothing may be acknowledged
    first_may_finish.set()
    await eventually(lambda: len(acked) == 4, timeout=5, interval=0.01)
    assert acked == [0, 1, 2, 3]


async def _failing_first(items: list[int]) -> None:
    if items[0] == 0:
        raise RuntimeError("bug")


async def test_a_failed_batch_is_never_acknowledged_and_holds_back_later_ones() -> None:
    acked: list[int] = []
    flushed: list[int] = []

    async def flush(items: list[int]) -> None:
        await _failing_first(items)
        flushed.extend(items)

    batcher: Batcher[int] = Batcher(
        flush, lambda i: asyncio.sleep(0, acked.append(i)), max_items=1, max_seconds=60, max_in_flight=2
    )
    for i in range(4):
        await batcher.add(i)
    await eventually(lambda: flushed == [1, 2, 3], timeout=5, interval=0.01)
    await _settle()
    assert acked == []  # 1, 2 and 3 were stored, but acknowledging them would commit past 0
    await batcher.close()


async def test_a_failed_batch_keeps_its_slot_so_the_worker_stops_taking_work() -> None:
    failed = asyncio.Event()

    async def flush(items: list[int]) -> None:
        failed.set()
        await _failing_first(items)

    batcher: Batcher[int] = Batcher(flush, lambda i: asyncio.sleep(0), max_items=1, max_seconds=60, max_in_flight=1)
    await batcher.add(0)
    await asyncio.wait_for(failed.wait(), 5)
    blocked = asyncio.create_task(batcher.add(1))
    await _settle()
    await asyncio.sleep(0.05)  # a freed slot would have let add(1) through by now
    assert not blocked.done()
    blocked.cancel()
    await batcher.close()


async def test_time_bound_flushes_a_partial_batch() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        flushed.append(items)

    batcher: Batcher[int] = Batcher(flush, lambda i: asyncio.sleep(0), max_items=100, max_seconds=0.1)
    timer = asyncio.create_task(batcher.run_timer())
    added = time.monotonic()
    await batcher.add(7)
    await eventually(lambda: flushed, timeout=5, interval=0.01)
    waited = time.monotonic() - added
    timer.cancel()
    assert flushed == [[7]]
    assert 0.1 <= waited < 2.0, waited  # not before its first item is max_seconds old; wide margin after
