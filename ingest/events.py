"""SDK events at the edge: parse and validate a body, pack the good events into topic messages."""

from __future__ import annotations

from typing import Any

import orjson

from llmscope.errors import BadRequest
from schemas.event import LLMEvent, validate_batch


def parse_events(body: bytes, max_events: int) -> tuple[list[LLMEvent], list[dict[str, Any]]]:
    """One event or {"events": [...]}; bad events are reported per index, good ones kept."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if isinstance(payload, dict) and "events" not in payload:
        payload = {"events": [payload]}
    return validate_batch(payload, max_events)


def encode_event_messages(events: list[LLMEvent], max_bytes: int) -> list[bytes]:
    """JSON arrays of events, each at most max_bytes (a single larger event travels alone)."""
    messages: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for event in events:
        encoded = orjson.dumps(event.model_dump(mode="json", exclude_none=True))
        if current and size + len(encoded) + 1 > max_bytes:
            messages.append(b"[" + b",".join(current) + b"]")
            current, size = [], 2
        current.append(encoded)
        size += len(encoded) + 1
    if current:
        messages.append(b"[" + b",".join(current) + b"]")
    return messages
