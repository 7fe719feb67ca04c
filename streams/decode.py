"""Ingest-topic message → spans: the pure stage between the broker and the sink."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage, MalformedMessage
from schemas.span import Span
from streams.normalise import normalise


def spans_from_message(message: IngestMessage) -> list[Span]:
    if message.format != FORMAT_OTLP_TRACES:
        raise MalformedMessage(f"unknown message format {message.format!r}")
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(message.value)
    except DecodeError as exc:
        raise MalformedMessage(f"value is not an ExportTraceServiceRequest: {exc}") from None
    try:
        return normalise(request, message.tenant_id)
    except Exception as exc:  # the normaliser must not fail; if it does, park the message, not the partition
        raise MalformedMessage(f"normalisation failed: {exc!r}") from None
