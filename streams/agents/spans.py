"""The spans agent: ingest-topic messages → stored spans, dead letters and rollup marks.

Messages are batched (streams/batching.py), turned into rows by the CPU stage
(streams/stages/pipeline.py, in worker processes), and written through the store sink; each is
acknowledged only after its whole batch is stored, in dispatch order, so a crash at any point
redelivers rather than loses, and the idempotent sink makes redelivery harmless.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping

import faust
import orjson
from faust.types import EventT, StreamT

from llmscope.live import LiveHub
from llmscope.settings import Settings
from schemas import span_columns
from schemas.rollup import ROLLUP_DIRTY
from streams.batching import Batcher
from streams.cpu_stage import CpuStage
from streams.deadletters import DeadLetters
from streams.inheritance import settle
from streams.policy_cache import PolicyCache
from streams.retrying import retrying
from streams.sink import StoreSink
from streams.stages.pipeline import RawMessage


def register(app: faust.App, settings: Settings, sink: StoreSink, policies: PolicyCache, marked: Callable[[], None],
             live: LiveHub | None, cpu: CpuStage | None = None) -> None:
    """The agent; `marked` is called once rollup marks are stored (it wakes the minute compactor);
    `cpu` is a CPU stage its owner shares and closes, or None for one of its own."""
    source = app.topic(settings.ingest_topic, value_serializer="raw", key_serializer="raw")
    deadletters = DeadLetters(app.topic(settings.deadletter_topic, value_serializer="raw", key_serializer="raw"), sink)
    owned, cpu = cpu is None, cpu or CpuStage(settings.worker_processes, settings.worker_niceness)
    marks = f"{sink.database}.{ROLLUP_DIRTY}"

    async def store_batch(events: list[EventT]) -> None:
        raws = [
            RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.value, _header_list(e.message.headers))
            for e in events
        ]
        current = await policies.current()
        prepared = await retrying("prepare batch", lambda: cpu.prepare(raws, current))
        for dead in prepared.dead:
            await retrying("dead-letter", lambda: deadletters.park(dead, raws[dead.index], events[dead.index].message.key))
        await deadletters.record(prepared.dead, raws, prepared.batch_id)
        await sink.write(prepared.spans, prepared.span_count, prepared.batch_id, fmt=span_columns.FORMAT)
        if live is not None and prepared.span_count:  # stored, so queryable: now tell live subscribers
            await live.publish_spans(prepared.spans)
        # Spans stored before or after their ancestors take what they inherit (streams/inheritance.py).
        settled = await retrying("settle inherited values", lambda: asyncio.to_thread(
            settle, sink.store, prepared.traces, prepared.first_start_ns, prepared.last_start_ns))
        # Marked only once the spans are in: the minute compactor recomputes exactly these minutes.
        await sink.write(prepared.mark_rows(), len(prepared.minutes), prepared.batch_id, table=marks)
        if settled:  # their own token: what a redelivery settles may differ from the first time
            token = hashlib.sha256(orjson.dumps([prepared.batch_id, sorted(settled)])).hexdigest()[:32]
            rows = orjson.dumps([{"tenant_id": t, "minute": m, "batch": token} for t, m in sorted(settled)])
            await sink.write(rows, len(settled), token, table=marks)
        marked()

    @app.agent(source, name="spans")
    async def process(stream: StreamT) -> None:
        stream = stream.noack()  # type: ignore[attr-defined]  # Stream has it; StreamT's stub lacks it
        cpu.start()  # now, not with the first batch: a process takes seconds to import the stages
        batcher: Batcher[EventT] = Batcher(
            store_batch,
            stream.ack,
            max_items=settings.sink_batch_messages,
            max_seconds=settings.sink_batch_seconds,
            max_weight=settings.sink_batch_bytes,
            weight=lambda e: len(e.message.value or b""),
        )
        timer = asyncio.create_task(batcher.run_timer())
        try:
            async for event in stream.events():
                await batcher.add(event)
        finally:
            # Synchronous steps first: a second cancellation while awaiting must not skip them.
            timer.cancel()
            if owned:
                cpu.close()
            await batcher.close()


def _header_list(headers: object) -> list[tuple[str, bytes]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or [])  # type: ignore[call-overload]
