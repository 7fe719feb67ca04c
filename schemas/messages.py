"""What travels on the topics: one contract for the producer (ingest) and the consumers (streams)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from schemas.times import storable

# Header names on every message of the ingest topic.
HEADER_TENANT = "llmscope-tenant"
HEADER_FORMAT = "llmscope-format"
HEADER_RECEIVED_AT = "llmscope-received-at-ns"
# A random id the ingest gives each message it acknowledges. It never repeats (unlike offsets, which
# a restarted broker or a re-created topic hands out again), so sinks deduplicate on it.
HEADER_MESSAGE_ID = "llmscope-message-id"

# Values of HEADER_FORMAT. The value bytes are:
FORMAT_OTLP_TRACES = "otlp-traces-v1"  # a serialized ExportTraceServiceRequest, only valid spans
FORMAT_SDK_EVENTS = "sdk-events-v1"  # a JSON array of validated LLMEvent objects (schemas/event.py)

# Dead-letter messages keep the original value and headers and add:
HEADER_DLQ_REASON = "llmscope-dlq-reason"
HEADER_DLQ_SOURCE = "llmscope-dlq-source"  # "topic/partition/offset"
HEADER_DLQ_ITEM = "llmscope-dlq-item"  # the span or event's index in its message; -1: the whole message


def new_message_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class IngestMessage:
    tenant_id: str
    format: str
    received_at_ns: int
    value: bytes
    message_id: str = field(default_factory=new_message_id)

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_TENANT, self.tenant_id.encode()),
            (HEADER_FORMAT, self.format.encode()),
            (HEADER_RECEIVED_AT, str(self.received_at_ns).encode()),
            (HEADER_MESSAGE_ID, self.message_id.encode()),
        ]


class MalformedMessage(Exception):
    """A message on a topic that cannot be decoded: it goes to the dead-letter topic with this reason."""


def parse_headers(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> dict[str, str]:
    """Kafka headers (list of (str, bytes) or a mapping) as a str→str dict; undecodable headers are poison."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    try:
        return {str(k): (v.decode() if isinstance(v, (bytes, bytearray)) else str(v)) for k, v in items}
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"header is not UTF-8: {exc}") from None


def ingest_message_from(value: bytes | None, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> IngestMessage:
    parsed = parse_headers(headers)
    tenant = parsed.get(HEADER_TENANT, "")
    fmt = parsed.get(HEADER_FORMAT, "")
    if not tenant:
        raise MalformedMessage(f"missing header {HEADER_TENANT}")
    if not fmt:
        raise MalformedMessage(f"missing header {HEADER_FORMAT}")
    if value is None:
        raise MalformedMessage("empty message value")
    try:
        received = int(parsed[HEADER_RECEIVED_AT])
    except KeyError:
        raise MalformedMessage(f"missing header {HEADER_RECEIVED_AT}") from None
    except ValueError:
        raise MalformedMessage(f"header {HEADER_RECEIVED_AT} is not an integer") from None
    if not storable(received):
        raise MalformedMessage(f"header {HEADER_RECEIVED_AT} is outside what the store can hold")
    value = bytes(value)
    # Messages from a producer that predates message ids: arrival time and content identify them
    # just as uniquely, and the same message redelivered hashes the same.
    message_id = parsed.get(HEADER_MESSAGE_ID) or hashlib.sha256(b"%d:" % received + value).hexdigest()[:32]
    return IngestMessage(tenant_id=tenant, format=fmt, received_at_ns=received, value=value, message_id=message_id)
