"""How many messages the worker reads ahead of an agent that may fall behind the spans agent.

All agents share one Faust consumer, and it hands out nothing while any stream's buffer is full
(`transport/conductor.py` awaits the `put` inside `on_message`). The worker's buffer is one span
batch (`stream_buffer_maxsize`, so a backlog of large span messages waits in the broker, not in
memory: bug 2 in RELIABILITY.md), and an agent slower than the spans agent would stop the spans as
soon as it fell that far behind. Agents fed small messages in bursts therefore read further ahead:
the anomaly agent (a tick's points while detectors warm up: 40 s without spans after an `up`
restart, bug 15) and the webhook fan-out (a burst of notifications, a few store round trips
each: 1,500 of them held the spans back 12 s). Every agent but the spans one reads ahead, and
tests/streams/test_read_ahead.py fails for a new one that does not."""

from __future__ import annotations

from faust.types import TopicT


def read_ahead(topic: TopicT, messages: int) -> TopicT:
    """`topic`, whose agent's stream buffers `messages`. Set on the topic, since `app.topic` accepts
    `maxsize` but does not pass it on (faust-streaming 0.15.3)."""
    topic.maxsize = messages
    return topic
