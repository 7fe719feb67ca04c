"""Fixtures the stream tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from llmscope.settings import Settings


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer on the test broker, for tests that put their own messages on a topic."""
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await p.start()
    yield p
    await p.stop()
