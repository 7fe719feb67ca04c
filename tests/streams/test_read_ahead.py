"""An agent that falls behind must not stop the spans: every agent shares the worker's one Faust
consumer, which hands out nothing while any stream's buffer is full (streams/read_ahead.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer

from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.notifications import Notification
from schemas.webhook_rows import read_deliveries
from streams.worker import create_worker_app
from tests.conftest import bearer, query_client, running_worker
from tests.reliability.conftest import private_settings
from tests.streams.test_webhook_delivery import _anomaly
from tests.streams.test_worker import _has, _message
from tests.waiting import eventually
from tests.webhook_receiver import serve_receiver

BURST = 1_500  # notifications; without the read-ahead they held the spans back 12-14 s
SPANS_WITHIN = 5.0  # seconds; with it the spans were stored 0.44 s after the send


def test_every_agent_but_the_spans_reads_ahead(settings: Settings, store: Store) -> None:
    """The rule in streams/read_ahead.py, for agents added later: one that reads as far as the
    worker's default (one span batch) can stop the spans as soon as it falls that far behind."""
    app, _ = create_worker_app(settings, store)
    reads = {name: (agent.channel.topics, agent.channel.maxsize)  # type: ignore[attr-defined]
             for name, agent in app.agents.items()}
    assert reads.pop("spans") == ((settings.ingest_topic,), None), "the ingest topic keeps one batch in memory: bug 2"
    assert reads, "the worker has no other agent: this rule has nothing to check"
    batch = app.conf.stream_buffer_maxsize
    short = {name: topics for name, (topics, maxsize) in reads.items() if (maxsize or 0) <= batch}
    assert not short, f"agents on {short} read no further ahead than a span batch: give their topic a read_ahead"


async def test_spans_are_stored_while_the_webhook_fan_out_works_through_a_burst(settings: Settings, store: Store) -> None:
    s = private_settings(settings, "read-ahead", webhook_allow_private=True)
    tenant = f"burst-{uuid.uuid4().hex[:8]}"
    headers = bearer(store, tenant, "admin")
    events = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
    spans = IngestProducer(s)
    async with running_worker(s, store), query_client(s, store) as api:
        await events.start()
        try:
            with serve_receiver([]) as receiver:
                r = await api.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers)
                assert r.status_code == 201, r.text
                endpoint = r.json()["data"]["id"]
                sent = [await events.send(s.events_topic, Notification(tenant, _anomaly(n)).to_bytes(), key=tenant.encode())
                        for n in range(BURST)]
                await asyncio.gather(*sent)
                await asyncio.sleep(1.0)  # the fan-out is under way, the consumer has read ahead

                await spans.send(_message(tenant, 5))
                started = time.monotonic()
                await eventually(lambda: _has(store, tenant, 5), timeout=30)
                waited = time.monotonic() - started
                fanned_out = len(read_deliveries(store, tenant, endpoint, limit=BURST))
        finally:
            await events.stop()
            await spans.close()
    assert fanned_out < BURST, "the fan-out had finished: the spans did not compete with it"
    assert waited < SPANS_WITHIN, f"the spans were stored {waited:.1f} s after the send ({BURST - fanned_out} notifications still to fan out)"
