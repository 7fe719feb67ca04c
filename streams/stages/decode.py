"""Ingest-topic message → spans: the pure stage between the broker and the sink."""

from __future__ import annotations

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from schemas.event import LLMEvent
from schemas.messages import FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS, IngestMessage, MalformedMessage
from schemas.span import Span
from streams.stages.normalise import normalise
from streams.stages.sdk_events import event_to_span


def spans_from_message(message: IngestMessage) -> list[Span]:
    if message.format == FORMAT_OTLP_TRACES:
        return _from_otlp(message)
    if message.format == FORMAT_SDK_EVENTS:
        return _from_events(message)
    raise MalformedMessage(f"unknown message format {message.format!r}")


def _from_otlp(message: IngestMessage) -> list[Span]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(message.value)
    except DecodeError as exc:
        raise MalformedMessage(f"value is not an ExportTraceServiceRequest: {exc}") from None
    try:
        return normalise(request, message.tenant_id)
    except Exception as exc:  # the normaliser must not fail; if it does, park the message, not the partition
        raise MalformedMessage(f"normalisation failed: {exc!r}") from None


def _from_events(message: IngestMessage) -> list[Span]:
    try:
        raw = orjson.loads(message.value)
        if not isinstance(raw, list):
            raise MalformedMessage("SDK events message is not a JSON array")
        # Ingest validated these already; validating again keeps a hand-written message honest.
        return [event_to_span(LLMEvent.model_validate(item), message.tenant_id) for item in raw]
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise MalformedMessage(f"invalid SDK events message: {str(exc)[:500]}") from None


def single_item(message: IngestMessage, item: int) -> bytes:
    """A message value of the same format holding only the `item`-th span or event (in decoding
    order), with its resource and scope: how one unstorable span is parked without its neighbours."""
    if message.format == FORMAT_SDK_EVENTS:
        return orjson.dumps([orjson.loads(message.value)[item]])
    request = ExportTraceServiceRequest.FromString(message.value)
    seen = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            if item < seen + len(ss.spans):
                out = ExportTraceServiceRequest()
                new_rs = out.resource_spans.add(resource=rs.resource, schema_url=rs.schema_url)
                new_rs.scope_spans.add(scope=ss.scope, schema_url=ss.schema_url).spans.append(ss.spans[item - seen])
                return out.SerializeToString()
            seen += len(ss.spans)
    raise IndexError(f"message has no item {item}")
