"""Reading the events topic as a receiver would: every notification on it, from the beginning."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from llmscope.settings import Settings
from schemas.notifications import Notification


async def events_on(settings: Settings, topic: str) -> list[Notification]:
    """Every notification on `topic` now, in offset order per partition (one tenant = one partition)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 15
        partitions = consumer.assignment()
        while not partitions and time.monotonic() < deadline:  # the topic may not exist yet
            await consumer.getmany(timeout_ms=100)
            partitions = consumer.assignment()
        end = await consumer.end_offsets(list(partitions))
        out: list[Notification] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [Notification.from_bytes(r.value) for r in records if r.value is not None]
        return out
    finally:
        await consumer.stop()
