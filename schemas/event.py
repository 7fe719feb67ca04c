"""The SDK event contract: one LLM call (or user span) as posted to `POST /api/v1/events` and carried
on the ingest topic; the worker turns it into a Span (streams/stages/sdk_events.py)."""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from llmscope.errors import BadRequest, PayloadTooLarge
from schemas.times import EVENT_EARLIEST_NS, EVENT_LATEST_NS, MAX_SPAN_DURATION_NS
from schemas.usage import MAX_TOKENS

DEFAULT_MAX_EVENTS = 1000
MAX_CONTENT_BYTES = 256 * 1024  # per input/output, as compact JSON; the SDK truncates well below this
MAX_ERRORS_PER_EVENT = 20  # keeps a rejection response small even for a hopeless event

_MAX_LATENCY_MS = MAX_SPAN_DURATION_NS / 1e6
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")


def _to_unix_ns(value: Any) -> Any:
    """RFC 3339 text, an aware datetime or Unix nanoseconds → Unix nanoseconds in [2000, 2100)."""
    if isinstance(value, bool):
        raise ValueError("must be an RFC 3339 date-time string or Unix nanoseconds, not a boolean")
    if isinstance(value, int):
        ns = value
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime must be timezone-aware")
        ns = _datetime_ns(value, value.microsecond * 1000)
    elif isinstance(value, str):
        m = _RFC3339.match(value)
        if not m:
            raise ValueError(f"{value[:40]!r} is not an RFC 3339 date-time with offset (e.g. 2026-01-02T03:04:05.123Z)")
        day, clock, frac, offset = m.groups()
        try:
            dt = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if offset in 'Zz' else offset}")
        except ValueError as exc:
            raise ValueError(f"{value[:40]!r} is not a valid date-time: {exc}") from None
        ns = _datetime_ns(dt, int((frac or "0").ljust(9, "0")))
    else:
        raise ValueError(f"must be an RFC 3339 date-time string or Unix nanoseconds, not {type(value).__name__}")
    if not EVENT_EARLIEST_NS <= ns < EVENT_LATEST_NS:
        raise ValueError(f"{ns} is outside 2000-01-01..2100-01-01 in Unix nanoseconds (seconds or milliseconds sent?)")
    return ns


def _datetime_ns(dt: datetime, sub_second_ns: int) -> int:
    whole = dt.replace(microsecond=0)
    return int(whole.timestamp()) * 10**9 + sub_second_ns


def _hex_checker(length: int) -> tuple[Callable[[str], str], WithJsonSchema]:
    pattern = re.compile(f"^[0-9a-fA-F]{{{length}}}$")

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"must be {length} hex characters, got {len(value)} characters {value[:40]!r}")
        if set(value) == {"0"}:
            raise ValueError("must not be all zeros (an invalid id in W3C trace context)")
        return value.lower()

    schema = {"type": "string", "pattern": pattern.pattern, "description": f"{length} hex characters, not all zero."}
    return check, WithJsonSchema(schema)


def _content_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "messages" if isinstance(value, list) else None


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"must be a string, number, boolean or null, not {type(value).__name__}")
    return value


UnixNanos = Annotated[
    int,
    BeforeValidator(_to_unix_ns),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": EVENT_EARLIEST_NS}],
            "description": "RFC 3339 date-time with offset, or Unix nanoseconds (integer).",
        }
    ),
]
_trace_check, _trace_schema = _hex_checker(32)
_span_check, _span_schema = _hex_checker(16)
TraceId = Annotated[str, AfterValidator(_trace_check), _trace_schema]
SpanId = Annotated[str, AfterValidator(_span_check), _span_schema]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
ShortStr = Annotated[str, Field(max_length=256)]


Scalar = Annotated[str | int | float | bool | None, BeforeValidator(_scalar)]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: str = Field("", max_length=256, description="Exception class or provider error code.")
    message: str = Field("", max_length=4096)


class ChatMessage(BaseModel):
    """One message; providers add their own keys (tool calls, audio, refusal…), so extra keys are kept, not refused."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: str = Field(min_length=1, max_length=64)
    content: str | list[Any] | dict[str, Any] | None = None


# A callable discriminator names the branch in error paths ("input.messages.0.role") instead of every union member.
Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ChatMessage], Tag("messages")],
    Discriminator(
        _content_kind, custom_error_type="content_type", custom_error_message="must be a string or a list of messages"
    ),
]


class LLMEvent(BaseModel):
    """One LLM call (or one user span) as the SDK submits it; `id` is the idempotency key."""

    model_config = ConfigDict(extra="forbid", strict=True, title="LLMEvent")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$", description="Idempotency key.")
    timestamp: UnixNanos = Field(description="Start of the call.")
    end_timestamp: UnixNanos | None = None
    latency_ms: float | None = Field(None, ge=0, le=_MAX_LATENCY_MS)
    trace_id: TraceId | None = Field(None, description="Absent: derived from id (sha256('trace:'+id)[:32]).")
    span_id: SpanId | None = Field(None, description="Absent: derived from id (sha256(id)[:16]).")
    parent_span_id: SpanId | None = None

    name: ShortStr = ""
    operation: str = Field("chat", pattern=r"^[a-z][a-z0-9_.-]{0,63}$", description="chat, embeddings, tool, agent…")
    provider: str = Field("", max_length=64)
    model: ShortStr = Field("", description="The model asked for.")
    response_model: ShortStr = Field("", description="The model that answered.")

    input_tokens: Tokens = Field(0, description="All input tokens, cached and cache-written included.")
    output_tokens: Tokens = Field(0, description="All output tokens, reasoning included.")
    cached_input_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    reasoning_tokens: Tokens = 0
    usage_reported: bool | None = Field(
        None,
        description=(
            "Whether the token counts are the call's stated usage. true: they are, even when all are 0 (a cached"
            " answer, a refused call: cost $0). false: no usage is known (no cost); counts must then be 0."
            " Absent: usage is known if any count is above 0, as before this field existed."
        ),
    )

    status: Literal["ok", "error"] = "ok"
    error: ErrorInfo | None = None
    input: Content | None = None
    output: Content | None = None

    user_id: ShortStr = ""
    session_id: ShortStr = ""
    prompt_name: ShortStr = ""
    prompt_version: str = Field("", max_length=64)
    service_name: ShortStr = ""
    finish_reasons: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=16)
    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list, max_length=64)
    metadata: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")], Scalar] = Field(
        default_factory=dict, max_length=64
    )

    @field_validator("input", "output")
    @classmethod
    def _content_size(cls, value: Content | None) -> Content | None:
        if value is not None and (size := len(content_json(value).encode())) > MAX_CONTENT_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_CONTENT_BYTES}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_values(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        for key, item in value.items():
            if isinstance(item, str) and len(item) > 1024:
                raise ValueError(f"value of {key!r} is {len(item)} characters; at most 1024")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"value of {key!r} must be a finite number")
        return value

    @field_validator("tags")
    @classmethod
    def _dedupe_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> LLMEvent:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"cached_input_tokens: {self.cached_input_tokens} + cache_write_tokens {self.cache_write_tokens}"
                f" exceed input_tokens {self.input_tokens}, which must include them"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens: {self.reasoning_tokens} exceed output_tokens {self.output_tokens},"
                " which must include them"
            )
        if self.usage_reported is False and self.input_tokens + self.output_tokens > 0:
            raise ValueError("usage_reported: is false but input_tokens or output_tokens is above 0")
        if self.end_timestamp is not None:
            if self.end_timestamp < self.timestamp:
                raise ValueError("end_timestamp: is before timestamp")
            if self.latency_ms is not None and abs((self.end_timestamp - self.timestamp) / 1e6 - self.latency_ms) > 1:
                raise ValueError("latency_ms: disagrees with end_timestamp - timestamp by more than 1 ms")
        if self.error is not None and self.status != "error":
            raise ValueError("error: is set but status is 'ok'")
        if self.parent_span_id is not None and self.trace_id is None:
            raise ValueError("trace_id: is required when parent_span_id is set (a derived trace would orphan it)")
        if self.span_id is None:
            self.span_id = derived_span_id(self.id)
        if self.span_id == self.parent_span_id:
            raise ValueError("parent_span_id: equals span_id")
        return self

    @property
    def has_usage(self) -> bool:
        """Usage is known: stated by usage_reported, or (when it is absent) a count above 0."""
        if self.usage_reported is not None:
            return self.usage_reported
        return self.input_tokens + self.output_tokens > 0

    @property
    def end_ns(self) -> int:
        if self.end_timestamp is not None:
            return self.end_timestamp
        return self.timestamp + round((self.latency_ms or 0.0) * 1e6)


def derived_span_id(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


def derived_trace_id(event_id: str) -> str:
    return hashlib.sha256(f"trace:{event_id}".encode()).hexdigest()[:32]


def content_json(value: Content) -> str:
    """Content as compact JSON text (a bare string too, so readers always json.loads it)."""
    plain = value if isinstance(value, str) else [m.model_dump(exclude_none=True) for m in value]
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":"))


class EventBatch(BaseModel):
    """The request body; pass `context={"max_events": n}` to validate to change the cap."""

    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[LLMEvent] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _cap(cls, value: list[LLMEvent], info: ValidationInfo) -> list[LLMEvent]:
        cap = (info.context or {}).get("max_events", DEFAULT_MAX_EVENTS)
        if len(value) > cap:
            raise ValueError(f"has {len(value)} events; at most {cap} per request")
        return value


def format_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors as 'field.path: message' lines; model-level messages already name their field."""
    lines = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS_PER_EVENT]:
        message = err["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in err["loc"])
        lines.append(f"{where}: {message}" if where else message)
    return lines


def validate_batch(payload: Any, max_events: int = DEFAULT_MAX_EVENTS) -> tuple[list[LLMEvent], list[dict[str, Any]]]:
    """Good events and per-event rejections; raises BadRequest/PayloadTooLarge if the envelope itself is wrong."""
    if not isinstance(payload, dict):
        raise BadRequest(f'body must be a JSON object {{"events": [...]}}, not {type(payload).__name__}')
    if unknown := sorted(set(payload) - {"events"}):
        raise BadRequest(f"unknown top-level field(s): {', '.join(map(str, unknown))}")
    raw = payload.get("events")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("events: must be a non-empty array")
    if len(raw) > max_events:
        raise PayloadTooLarge(f"events: has {len(raw)} events; at most {max_events} per request")
    good: list[LLMEvent] = []
    bad: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            bad.append({"index": i, "id": None, "errors": [f"event: must be a JSON object, not {type(item).__name__}"]})
            continue
        given_id = item["id"] if isinstance(item.get("id"), str) else None
        try:
            event = LLMEvent.model_validate(item)
        except ValidationError as exc:
            bad.append({"index": i, "id": given_id, "errors": format_errors(exc)})
            continue
        if event.id in first_index:
            bad.append({"index": i, "id": event.id, "errors": [f"id: duplicate of events[{first_index[event.id]}]"]})
            continue
        first_index[event.id] = i
        good.append(event)
    return good, bad


if __name__ == "__main__":  # regenerate the committed JSON Schema: python -m schemas.event
    from pathlib import Path

    target = Path(__file__).with_name("event.schema.json")
    target.write_text(json.dumps(LLMEvent.model_json_schema(), indent=2, ensure_ascii=False) + "\n")
