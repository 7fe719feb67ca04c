"""The worker: a Faust app whose agents turn ingest-topic messages into stored spans and rollups.

This module builds the app (its Faust configuration) and registers the agents and timers, one
module each under `streams/agents/`: `spans` (the ingest topic → store), `rollups` (minute,
hour and day rollups, leader-only timers), `alerts` (alert rules evaluated once a minute on the
leader, transitions sent to the events topic), `budgets` (each budget's spend summed on the
leader, thresholds reached sent to the events topic once per period), `anomalies` (closed
minutes → detectors → anomaly episodes) and `webhooks` (the events topic → the delivery outbox → signed POSTs, a leader-only
delivery loop). Messages are acknowledged explicitly, only after their batch is in ClickHouse (or,
for poison messages and unstorable spans, in the dead-letter topic), so a crash at any point
redelivers rather than loses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import faust

from llmscope.kafka_security import faust_credentials
from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store
from streams.agents import alerts, anomalies, budgets, rollups, spans, webhooks
from streams.cpu_stage import CpuStage
from streams.pacing import IdlePacer
from streams.policy_cache import PolicyCache
from streams.sink import StoreSink


def _faust_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.worker_name,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        # Brokers hold a group join open for the whole rebalance timeout (tansu included);
        # short timeouts let a restarted worker resume within seconds.
        broker_rebalance_timeout=3.0,
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
        # Messages waiting for the agent stay in the broker, not in memory: one batch of read-ahead.
        stream_buffer_maxsize=settings.sink_batch_messages,
        # Stopping does not wait for batches in flight: one that cannot be stored (the store is
        # down) would hold the stop forever. They are not acknowledged, so the next worker gets them
        # again, and nothing stores or counts twice (see sink.py); what was acknowledged is committed.
        stream_wait_empty=False,
    )


def create_worker_app(
    settings: Settings, store: Store, live: LiveHub | None = None, alert_clock: Callable[[], float] = time.time,
    sink: StoreSink | None = None, cpu: CpuStage | None = None,
) -> tuple[faust.App, StoreSink]:
    """The worker's Faust app, not yet started, and the sink its spans agent writes through.
    `alert_clock` is the time the alert evaluator ticks at (tests drive it through whole minutes);
    `sink` is one to share (`up`'s successive workers share one, which its `/ready` watches), and
    so is `cpu`, which its owner closes (they share one: a broker rotation runs one CPU-stage
    process, not two)."""
    app = _faust_app(settings)
    sink = sink or StoreSink(store)
    minutes_pacer = IdlePacer(settings.idle_poll_seconds)
    spans.register(app, settings, sink, PolicyCache(store, settings), minutes_pacer.wake, live, cpu)
    rollups.register(app, settings, store, minutes_pacer)
    alerts.register(app, settings, store, alert_clock, live)
    budgets.register(app, settings, store)
    anomalies.register(app, settings, store, live)
    webhooks.register(app, settings, store)
    return app, sink
