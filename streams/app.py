"""The worker: a Faust app whose agent turns ingest-topic messages into stored spans."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust
from faust.types import EventT

from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.messages import HEADER_DLQ_REASON, HEADER_DLQ_SOURCE, MalformedMessage, ingest_message_from
from schemas.span import Span
from streams.decode import spans_from_message
from streams.sink import SourceOffset, SpanSink, dedup_token

log = logging.getLogger(__name__)


def create_worker_app(settings: Settings, store: Store) -> tuple[faust.App, SpanSink]:
    app = faust.App(
        settings.worker_name,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        # A tansu (and any broker) holds a group join open for the whole rebalance timeout;
        # short timeouts let a restarted worker resume within seconds.
        broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
    )
    source = app.topic(settings.ingest_topic, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    deadletter = app.topic(settings.deadletter_topic, value_serializer="raw", key_serializer="raw")
    sink = SpanSink(store)

    async def park(event: EventT, reason: str) -> None:
        msg = event.message
        log.warning("dead-lettering %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, reason)
        headers = list(msg.headers or []) + [
            (HEADER_DLQ_REASON, reason.encode()[:1000]),
            (HEADER_DLQ_SOURCE, f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
        ]
        await deadletter.send(key=msg.key, value=msg.value, headers=headers)

    async def handle(events: Sequence[EventT]) -> None:
        spans: list[Span] = []
        stamps: list[int] = []
        for event in events:
            try:
                message = ingest_message_from(event.message.value, event.message.headers)
                decoded = spans_from_message(message)
            except MalformedMessage as exc:
                await park(event, str(exc))
                continue
            spans.extend(decoded)
            stamps.extend([message.received_at_ns] * len(decoded))
            # Normalising a batch takes tens of ms; in `up` the same loop serves ingest and query.
            await asyncio.sleep(0)
        offsets = [SourceOffset(e.message.topic, e.message.partition, e.message.offset) for e in events]
        await sink.write([s.to_row(t) for s, t in zip(spans, stamps)], dedup_token(offsets))

    @app.agent(source, name="spans")
    async def process(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.sink_batch_messages, within=settings.sink_batch_seconds):
            try:
                await handle(events)
            except BaseException:
                # take_events acks the batch in a `finally` even when we are cancelled mid-write
                # (graceful stop). Marking the messages as already acked turns that into a no-op,
                # so their offsets are never committed and the batch is redelivered.
                for event in events:
                    event.message.acked = True
                raise

    return app, sink
