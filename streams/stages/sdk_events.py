"""SDK events → the shared Span model: the SDK's twin of the OTLP normaliser (normalise.py). Pure."""

from __future__ import annotations

import json

from schemas.event import LLMEvent, content_json, derived_span_id, derived_trace_id
from schemas.operations import MODEL_CALL_OPERATIONS, canonical_operation
from schemas.span import Span, SpanEvent, SpanKind


def event_to_span(event: LLMEvent, tenant_id: str) -> Span:
    """The stored span of one event: typed columns for what is queried, `llmscope.*` attributes for the rest."""
    end_ns = event.end_ns
    attributes = {"llmscope.event_id": event.id}
    if event.input is not None:
        attributes["llmscope.prompt"] = content_json(event.input)
    if event.output is not None:
        attributes["llmscope.completion"] = content_json(event.output)
    if event.tags:
        attributes["llmscope.tags"] = json.dumps(event.tags, ensure_ascii=False)
    for key, value in event.metadata.items():
        if value is not None:
            attributes[f"llmscope.metadata.{key}"] = _scalar_text(value)
    events: list[SpanEvent] = []
    if event.error is not None:
        if event.error.type:
            attributes["error.type"] = event.error.type
        events.append(
            SpanEvent(
                time_ns=end_ns,
                name="exception",
                attributes={"exception.type": event.error.type, "exception.message": event.error.message},
            )
        )
    service = event.service_name or "unknown_service"
    operation = canonical_operation(event.operation)
    # A model call is a call out of the process (OTel GenAI: CLIENT); agents, tools and user spans are INTERNAL.
    kind: SpanKind = "client" if operation in MODEL_CALL_OPERATIONS else "internal"
    return Span(
        tenant_id=tenant_id,
        trace_id=event.trace_id or derived_trace_id(event.id),
        span_id=event.span_id or derived_span_id(event.id),
        parent_span_id=event.parent_span_id or "",
        name=event.name or f"{event.operation} {event.model}".strip(),
        kind=kind,
        service_name=service,
        start_time_ns=event.timestamp,
        end_time_ns=end_ns,
        status_code=event.status,
        status_message=event.error.message if event.error else "",
        operation=operation,
        provider=event.provider,
        request_model=event.model,
        response_model=event.response_model,
        input_tokens=event.input_tokens,
        output_tokens=event.output_tokens,
        cached_input_tokens=event.cached_input_tokens,
        cache_write_tokens=event.cache_write_tokens,
        reasoning_tokens=event.reasoning_tokens,
        usage_reported=event.has_usage,
        session_id=event.session_id,
        user_id=event.user_id,
        prompt_name=event.prompt_name,
        prompt_version=event.prompt_version,
        finish_reasons=list(event.finish_reasons),
        attributes=attributes,
        resource_attributes={"service.name": service},
        events=events,
        source="sdk",
    )


def _scalar_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)
