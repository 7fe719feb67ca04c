"""The worker's batcher: acknowledgements never leave a gap, whatever order batches finish in."""

from __future__ import annotations

import asyncio

from streams.batching import Batcher


async def test_a_later_batch_that_finishes_first_waits_to_be_acknowledged() -> None:
    first_may_finish = asyncio.Event()
    acked: list[int] = []

    async def flush(items: list[int]) -> None:
        if items[0] == 0:
            await first_may_finish.wait()

    batcher: Batcher[int] = Batcher(flush, lambda i: asyncio.sleep(0, acked.append(i)), max_items=2, max_seconds=60)
    for i in range(4):
        await batcher.add(i)
    await asyncio.sleep(0.05)
    assert acked == []  # batch [2, 3] is stored, but [0, 1] is not: nothing may be acknowledged
    first_may_finish.set()
    await asyncio.sleep(0.05)
    assert acked == [0, 1, 2, 3]


async def _failing_first(items: list[int]) -> None:
    if items[0] == 0:
        raise RuntimeError("bug")


async def test_a_failed_batch_is_never_acknowledged_and_holds_back_later_ones() -> None:
    acked: list[int] = []
    batcher: Batcher[int] = Batcher(
        _failing_first, lambda i: asyncio.sleep(0, acked.append(i)), max_items=1, max_seconds=60, max_in_flight=2
    )
    for i in range(4):
        await batcher.add(i)
    await asyncio.sleep(0.05)
    assert acked == []  # 1, 2 and 3 were stored, but acknowledging them would commit past 0
    await batcher.close()


async def test_a_failed_batch_keeps_its_slot_so_the_worker_stops_taking_work() -> None:
    batcher: Batcher[int] = Batcher(_failing_first, lambda i: asyncio.sleep(0), max_items=1, max_seconds=60, max_in_flight=1)
    await batcher.add(0)
    await asyncio.sleep(0.05)
    blocked = asyncio.create_task(batcher.add(1))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    blocked.cancel()
    await batcher.close()


async def test_time_bound_flushes_a_partial_batch() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        flushed.append(items)

    batcher: Batcher[int] = Batcher(flush, lambda i: asyncio.sleep(0), max_items=100, max_seconds=0.1)
    timer = asyncio.create_task(batcher.run_timer())
    await batcher.add(7)
    await asyncio.sleep(0.3)
    timer.cancel()
    assert flushed == [[7]]
