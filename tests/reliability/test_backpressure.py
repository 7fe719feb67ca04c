"""A slow store pushes back on the worker, not on the ingest, and the process stays bounded.

Ingest and worker share this process, as in `llmscope up`. Each insert sleeps, so the worker
falls further behind with every request; ingest must keep answering 200 (the backlog waits in
the broker) and the Python heap must level off instead of growing with the backlog.

The bound, and why: ingest keeps nothing once it has answered, so what may grow is the worker's
read-ahead. aiokafka holds at most `consumer_max_fetch_size` (4 MiB, compressed) per partition
per fetch, one fetch buffered and one in flight: 2 partitions x 2 x 4 MiB = 16 MiB, 32 MiB once
decompressed (this test's hex padding compresses 2:1), and about as much again in per-message
Python objects (records, Faust messages and events); Faust's stream buffer and the batches in
flight add a few dozen messages. PREFETCH_BOUND = 64 MiB. A backlog larger than that must stay
in the broker. Measured here: with a one-batch stream buffer the heap stayed within 1 MiB of its
start (with 32 KB messages it levelled off 38 MiB up); with Faust's default buffer (4096
messages per partition) it grew 93 MiB for a 94 MiB backlog."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from llmscope.kafka import consumer_lag, ensure_topics
from streams.worker import create_worker_app
from tests.ingest.conftest import make_client
from tests.reliability.conftest import FaultyStore, Load, new_tenant, private_settings

REQUESTS, CLIENTS, STEP = 1500, 8, 250
SPANS, PADDING = 10, 6000  # ≈ 60 KB per request, so the backlog soon dwarfs the bound
MiB = 1024 * 1024
PREFETCH_BOUND = 64 * MiB


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


async def test_slow_store_keeps_ingest_answering_and_memory_bounded(settings, store) -> None:
    s = private_settings(settings, "backpressure", sink_batch_messages=10)
    await ensure_topics(s)
    slow = FaultyStore(store, delay=1.0)  # ≈ 20 messages/s with two batches in flight
    app, _sink = create_worker_app(s, slow)
    await app.start()
    _tenant, key = new_tenant(store, "backpressure")
    client, producer = await make_client(s, store)
    load = Load(client, key, spans=SPANS, padding=PADDING, remember=False)
    samples: list[tuple[int, int, int]] = []  # (requests, heap bytes, lag in messages)
    tracemalloc.start()
    try:
        async def one_client(n: int) -> None:
            for _ in range(n):
                assert await load.one() == 200

        while load.sent < REQUESTS:
            await asyncio.gather(*(one_client(STEP // CLIENTS) for _ in range(CLIENTS)))
            gc.collect()
            samples.append((load.sent, tracemalloc.get_traced_memory()[0], await consumer_lag(s, s.worker_name)))
    finally:
        tracemalloc.stop()
        await client.aclose()
        await producer.close()
        await app.stop()

    print("\nrequests  heap MiB  backlog (messages)")
    for sent, heap, lag in samples:
        print(f"{sent:8d}  {heap / MiB:8.1f}  {lag:8d}")
    print(f"RSS at the end {_rss_mib():.0f} MiB")
    heap_start, (_, heap_peak, _), (_, _, backlog) = samples[0][1], max(samples, key=lambda x: x[1]), samples[-1]
    assert backlog * SPANS * PADDING > 1.2 * PREFETCH_BOUND  # the worker really fell behind: the test means something
    assert heap_peak - heap_start < PREFETCH_BOUND, (
        f"heap grew {(heap_peak - heap_start) / MiB:.1f} MiB with a backlog of {backlog * SPANS * PADDING / MiB:.0f} MiB: "
        "the worker holds the backlog in memory instead of leaving it in the broker"
    )
