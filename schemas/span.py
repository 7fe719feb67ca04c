"""The span model every stage shares: what the normaliser produces and the spans table stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

# Attribute values are stored up to this size; longer text is cut here with the marker. The ingest
# applies the same cut to spans too large for one Kafka message, so what it keeps is what the store
# would have kept anyway.
MAX_VALUE_BYTES = 32 * 1024
TRUNCATED_MARK = "…[truncated]"
_TRUNCATED_BYTES = len(TRUNCATED_MARK.encode())
_SHORT_CHARS = MAX_VALUE_BYTES // 4  # at most 4 UTF-8 bytes a character: no need to encode to know

StatusCode = Literal["unset", "ok", "error"]
SpanKind = Literal["unspecified", "internal", "server", "client", "producer", "consumer"]
Source = Literal["otlp", "sdk"]


@dataclass(slots=True)
class SpanEvent:
    time_ns: int
    name: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    """One span in one tenant. Ids are lowercase hex; times are Unix nanoseconds."""

    tenant_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: SpanKind
    service_name: str
    start_time_ns: int
    end_time_ns: int
    status_code: StatusCode = "unset"
    status_message: str = ""
    operation: str = ""
    provider: str = ""
    request_model: str = ""
    response_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # True when the producer stated its token usage, even as all zeros (a cached answer, a refused
    # call: those cost $0). False when it said nothing: usage, and so cost, is unknown. A span with a
    # non-zero count has usage whatever this says (see has_usage).
    usage_reported: bool = False
    cost_usd: Decimal | None = None
    price_source: str = ""
    model_version: str = ""
    session_id: str = ""
    user_id: str = ""
    prompt_name: str = ""
    prompt_version: str = ""
    # Which of user_id, session_id and prompt (name and version) the span did not state itself but
    # inherited from an ancestor in its trace (streams/stages/inherit.py); those columns hold the value in effect.
    inherited: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    pii_counts: dict[str, int] = field(default_factory=dict)
    resource_attributes: dict[str, str] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    source: Source = "otlp"

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_time_ns - self.start_time_ns)

    @property
    def has_usage(self) -> bool:
        """Token usage is known: stated (even as zeros) or evident from a non-zero count."""
        counts = (self.input_tokens, self.output_tokens, self.cached_input_tokens, self.cache_write_tokens)
        return self.usage_reported or any(counts) or self.reasoning_tokens > 0

    @property
    def model(self) -> str:
        """The model that answered, else the one asked for."""
        return self.response_model or self.request_model

    def to_row(self, ingested_at_ns: int) -> dict[str, Any]:
        """The spans-table row, JSON-ready (DateTime64 as 'seconds.nanoseconds' strings)."""
        return {
            "tenant_id": self.tenant_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind,
            "service_name": self.service_name,
            "start_time": ns_to_ch(self.start_time_ns),
            "end_time": ns_to_ch(self.end_time_ns),
            "duration_ns": self.duration_ns,
            "status_code": self.status_code,
            "status_message": self.status_message,
            "operation": self.operation,
            "provider": self.provider,
            "request_model": self.request_model,
            "response_model": self.response_model,
            "model": self.model,
            "model_version": self.model_version,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "usage_reported": int(self.has_usage),
            # Fixed-point text: str(Decimal) may say 3.5E-8, which ClickHouse's Decimal parser refuses.
            "cost_usd": None if self.cost_usd is None else format(self.cost_usd, "f"),
            "price_source": self.price_source,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "prompt_name": self.prompt_name,
            "prompt_version": self.prompt_version,
            "inherited": self.inherited,
            "finish_reasons": self.finish_reasons,
            "attributes": self.attributes,
            "pii_counts": self.pii_counts,
            "resource_attributes": self.resource_attributes,
            "events": [
                {"time": ns_to_ch(e.time_ns), "name": e.name, "attributes": e.attributes} for e in self.events
            ],
            "source": self.source,
            "ingested_at": ns_to_ch(ingested_at_ns),
        }


def ns_to_ch(ns: int) -> str:
    """Unix nanoseconds as ClickHouse DateTime64(9) text; a bare integer would be read as seconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def cap_text(text: str) -> str:
    """`text` if it fits in MAX_VALUE_BYTES of UTF-8, else its first bytes (whole characters) + the mark."""
    if len(text) <= _SHORT_CHARS:
        return text
    encoded = text.encode()
    if len(encoded) <= MAX_VALUE_BYTES:
        return text
    return encoded[: MAX_VALUE_BYTES - _TRUNCATED_BYTES].decode(errors="ignore") + TRUNCATED_MARK
