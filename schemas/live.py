"""The live stream's contract: the small message a stored span becomes, the filters a subscriber
sets, and the text of a span's (already redacted) input and output.

The worker publishes spans after their INSERT succeeded, so everything a live client sees can be
read back through the query API. Messages are built from spans-table rows (`Span.to_row`'s dicts,
read back from the columns the sink wrote: schemas/span_columns.py), so the previews are of the
redacted text, never the original.
Every message has a `type`; clients ignore types they do not know, so new kinds join the stream
without breaking them: `span`, `anomaly` (an episode opened, grew or closed) and `alert` (a rule's
alert fired or resolved); the span filters apply to spans only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.alert_events import AlertFiringEvent, AlertResolvedEvent

PREVIEW_CHARS = 200
CONTENT_CHARS = 16_000  # the trace view's full text, capped: attributes may hold 32 KB each
_TRUNCATED = "…"

# Where instrumentations put the text, in precedence order (the keys streams/stages/normalise.py and the
# PII scanner know): OTel GenAI (current and legacy), OpenLLMetry's indexed form, OpenInference, our SDK.
_INPUT_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "input.value", "llmscope.prompt")
_OUTPUT_KEYS = ("gen_ai.output.messages", "gen_ai.completion", "output.value", "llmscope.completion")
_INDEXED = {
    "input": (re.compile(r"^gen_ai\.prompt\.(\d+)\.content$"), re.compile(r"^llm\.input_messages\.(\d+)\.message\.content$")),
    "output": (
        re.compile(r"^gen_ai\.completion\.(\d+)\.content$"),
        re.compile(r"^llm\.output_messages\.(\d+)\.message\.content$"),
    ),
}

Direction = Literal["input", "output"]
Short = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


class LiveFilter(BaseModel):
    """What a subscriber wants; every given field must match (strings exactly, numbers as minimums)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: Short | None = None
    model: Short | None = None
    provider: Short | None = None
    status: Literal["ok", "error", "unset"] | None = None
    operation: Short | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    min_latency_ms: float | None = Field(None, ge=0, le=1e12)
    min_cost_usd: float | None = Field(None, ge=0, le=1e12)

    def matches(self, message: Mapping[str, Any]) -> bool:
        if message.get("type") != "span":
            return True  # anomalies and alerts are not span-filtered
        for name in ("service", "model", "provider", "status", "operation", "user_id", "session_id"):
            wanted = getattr(self, name)
            if wanted is not None and message.get(name) != wanted:
                return False
        if self.min_latency_ms is not None and message["latency_ms"] < self.min_latency_ms:
            return False
        if self.min_cost_usd is not None:
            cost = message.get("cost_usd")
            if cost is None or cost < self.min_cost_usd:
                return False
        return True


def span_message(row: Mapping[str, Any]) -> dict[str, Any]:
    """The live message for one spans-table row (the tenant is not in it: the hub routes by tenant)."""
    attributes = row.get("attributes") or {}
    return {
        "type": "span",
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
        "parent_span_id": row.get("parent_span_id") or None,
        "name": _clip(row.get("name", ""), PREVIEW_CHARS),
        "time": _iso(row["start_time"]),
        "service": row.get("service_name", ""),
        "model": row.get("model", ""),
        "provider": row.get("provider", ""),
        "operation": row.get("operation", ""),
        "status": row.get("status_code", "unset"),
        "latency_ms": int(row.get("duration_ns", 0)) / 1e6,
        "input_tokens": int(row.get("input_tokens", 0)),
        "output_tokens": int(row.get("output_tokens", 0)),
        "cost_usd": _cost(row.get("cost_usd")),
        "user_id": row.get("user_id", ""),
        "session_id": row.get("session_id", ""),
        "input": preview(content_text(attributes, "input")),
        "output": preview(content_text(attributes, "output")),
    }


def anomaly_message(row: Mapping[str, Any], change: str) -> dict[str, Any]:
    """The live message for one anomalies-table row (schemas/anomalies.py), written when an episode
    `change`d: opened, updated (its peak grew) or closed. The fields are the query API's."""
    overall = bool(row["is_overall"])
    return {
        "type": "anomaly",
        "change": change,
        "episode_id": row["episode_id"],
        "overall": overall,
        "service": None if overall else row["service_name"],
        "provider": None if overall else row["provider"],
        "model": None if overall else row["model"],
        "metric": row["metric"],
        "direction": row["direction"],
        "status": row["status"],
        "started_at": _iso_text(row["started_at"]),
        "ended_at": None if row["ended_at"] is None else _iso_text(row["ended_at"]),
        "observed": row["observed"],
        "expected": row["expected"],
        "score": row["score"],
        "peak_at": _iso_text(row["peak_at"]),
        "peak_score": row["peak_score"],
        "peak_observed": row["peak_observed"],
        "peak_expected": row["peak_expected"],
    }


def alert_message(event: AlertFiringEvent | AlertResolvedEvent) -> dict[str, Any]:
    """The live message for an alert that fired or resolved: the event's own data (GET /api/v1/alerts
    answers the same fields), sent once the evaluator has stored the alert and the broker has the event."""
    return {"type": "alert", "change": event.data.status, **event.data.model_dump(mode="json")}


def content_text(attributes: Mapping[str, str], direction: Direction, limit: int = CONTENT_CHARS) -> str:
    """The span's input or output as readable text ("role: text" lines for message lists), or ''."""
    for key in _INPUT_KEYS if direction == "input" else _OUTPUT_KEYS:
        value = attributes.get(key)
        if value:
            return _clip(_readable(value), limit)
    parts = []
    for pattern in _INDEXED[direction]:
        found = sorted((int(m.group(1)), k) for k in attributes if (m := pattern.match(k)))
        for index, key in found:
            role = attributes.get(key.rsplit(".", 1)[0] + ".role", "")
            parts.append(f"{role}: {attributes[key]}" if role else attributes[key])
        if parts:
            return _clip("\n".join(parts), limit)
    return ""


def preview(text: str, chars: int = PREVIEW_CHARS) -> str:
    return _clip(" ".join(text.split()), chars)


def _readable(value: str) -> str:
    """JSON message lists and JSON strings become text; anything else is shown as it is."""
    stripped = value.lstrip()
    if not stripped.startswith(("[", "{", '"')):
        return value
    try:
        parsed = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return value
    return _text_of(parsed, 0) or value


def _text_of(value: Any, depth: int) -> str:
    if depth > 6:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_text_of(v, depth + 1) for v in value) if t)
    if isinstance(value, dict):
        body = next((value[k] for k in ("content", "parts", "text", "message", "value") if value.get(k)), None)
        text = _text_of(body, depth + 1) if body is not None else ""
        role = value.get("role")
        return f"{role}: {text}" if isinstance(role, str) and role and text else text
    return ""


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + _TRUNCATED


def _iso(value: Any) -> str:
    """Row times are 'seconds.nanoseconds' text (schemas.span.ns_to_ch); clients get RFC 3339, ms, UTC."""
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc)
    else:
        seconds, _, fraction = str(value).partition(".")
        moment = datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int((fraction + "000000")[:6]))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_text(value: str) -> str:
    """A 'YYYY-MM-DD HH:MM:SS' UTC time (how rows carry a DateTime) in RFC 3339."""
    return _iso(datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc))


def _cost(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None
