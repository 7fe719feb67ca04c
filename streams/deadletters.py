"""Dead letters: what the worker cannot store is parked, never retried forever nor dropped.

A message that cannot be decoded, or one span or event of it that cannot be stored, goes to the
dead-letter topic with its reason in the headers (the content, for whoever repairs and replays it),
and gets a row in the dead_letters table: where it came from and why, never the content, which was
parked before (or because) enrichment ran and is therefore unredacted.
"""

from __future__ import annotations

import logging
import time

import orjson
from faust.types import TopicT

from llmscope.metrics import DEAD_LETTERS

from schemas.messages import (
    HEADER_DLQ_ITEM,
    HEADER_DLQ_REASON,
    HEADER_DLQ_SOURCE,
    HEADER_FORMAT,
    HEADER_RECEIVED_AT,
    HEADER_TENANT,
    MalformedMessage,
    parse_headers,
)
from schemas.span import ns_to_ch
from schemas.times import storable
from streams.sink import StoreSink
from streams.stages.pipeline import DeadLetter, RawMessage

log = logging.getLogger(__name__)


def dead_letter_row(dead: DeadLetter, raw: RawMessage) -> dict[str, object]:
    """The dead_letters row: where it came from and why, never the (unredacted) content."""
    tenant, fmt, received = dead.tenant_id, dead.format, dead.received_at_ns
    if not tenant:
        try:
            headers = parse_headers(raw.headers)
        except MalformedMessage:
            headers = {}
        tenant, fmt = headers.get(HEADER_TENANT, ""), headers.get(HEADER_FORMAT, "")
        received = int(headers[HEADER_RECEIVED_AT]) if headers.get(HEADER_RECEIVED_AT, "").isdigit() else 0
    return {
        "tenant_id": tenant,
        "message_id": dead.message_id or raw.source,
        "item": dead.item,
        "parked_at": f"{time.time():.3f}",
        "received_at": ns_to_ch(received if storable(received) else time.time_ns()),
        "source": raw.source,
        "format": fmt,
        "trace_id": dead.trace_id,
        "span_id": dead.span_id,
        "reason": dead.reason[:1000],
        "size_bytes": len(dead.value if dead.value is not None else raw.value or b""),
    }


class DeadLetters:
    """The dead-letter topic and table of one worker."""

    def __init__(self, topic: TopicT, sink: StoreSink) -> None:
        self._topic = topic
        self._sink = sink
        self._table = f"{sink.database}.dead_letters"

    async def park(self, dead: DeadLetter, raw: RawMessage, key: bytes | None) -> None:
        """Send one dead letter to the topic; raises if the broker does not take it (the caller retries)."""
        what = "message" if dead.item < 0 else f"item {dead.item} of message"
        log.warning("dead-lettering %s %s: %s", what, raw.source, dead.reason)
        headers = raw.headers + [
            (HEADER_DLQ_REASON, dead.reason.encode()[:1000]),
            (HEADER_DLQ_SOURCE, raw.source.encode()),
            (HEADER_DLQ_ITEM, str(dead.item).encode()),
        ]
        value = raw.value if dead.value is None else dead.value
        # force: sent now and awaited, not attached to the current event (which Faust would send
        # only at its ack, after the source offset may already be committed).
        sent = await self._topic.send(key=key, value=value, headers=headers, force=True)
        await sent
        DEAD_LETTERS.labels("message" if dead.item < 0 else "item").inc()

    async def record(self, dead: list[DeadLetter], raws: list[RawMessage], batch_id: str) -> None:
        """The dead_letters rows of one batch, written once (idempotent, like every sink write)."""
        if dead:
            rows = orjson.dumps([dead_letter_row(d, raws[d.index]) for d in dead])
            await self._sink.write(rows, len(dead), batch_id, table=self._table)
