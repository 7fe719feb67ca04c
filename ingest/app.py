"""The ingest role's HTTP surface: OTLP/HTTP traces at /v1/traces, SDK events at /api/v1/events,
health and readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ingest.decompress import decompress
from ingest.early_refusals import EarlyRefusals
from ingest.events import encode_event_messages, parse_events
from ingest.otlp_codec import GRPC_CODE, OtlpStatus, decode_traces, encode_export_response, encode_status
from ingest.otlp_validate import Validated, split_request, validate_spans
from ingest.ratelimit import RateLimiter, RateLimitHeaders
from ingest.tenant_limits import TenantLimits
from llmscope.auth import KeyResolver, Principal
from llmscope.docs import install_docs
from llmscope.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from llmscope.http import (
    ERROR_RESPONSES,
    Check,
    CheckFailed,
    RequestIdMiddleware,
    authenticate,
    install_error_handlers,
    install_health,
    store_answers,
)
from llmscope.kafka import IngestProducer
from llmscope.metrics import RATE_LIMIT_DECISIONS, SPANS_ACCEPTED, SPANS_REJECTED, install_metrics
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.event import EventBatch
from schemas.messages import FORMAT_OTLP_TRACES, FORMAT_SDK_EVENTS, IngestMessage
from schemas.times import NS_PER_DAY

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Decoding a large body (or any OTLP JSON, ~10x slower than protobuf) would stall every other
# request on the loop; those go to a thread. A compressed body may expand a thousandfold, so the
# bar for it is far lower.
_OFFLOAD_BYTES = 1024 * 1024
_OFFLOAD_COMPRESSED_BYTES = 16 * 1024
# OTLP paths answer errors with a google.rpc.Status in the request's encoding, as the spec says.
OTLP_PREFIX = "/v1/"


def _otlp_responses() -> dict[int | str, dict[str, Any]]:
    """/v1/traces answers in the request's encoding: protobuf, or JSON as the models say."""

    def protobuf() -> dict[str, Any]:
        return {PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}

    status = "google.rpc.Status in the request's encoding"
    return {
        200: {"description": "ExportTraceServiceResponse, partial success when spans were rejected", "content": protobuf()},
        "4XX": {"model": OtlpStatus, "description": f"{status}: bad request, key, size, type or rate limit", "content": protobuf()},
        "5XX": {"model": OtlpStatus, "description": f"{status}: broker unavailable, retry", "content": protobuf()},
    }


def _wants_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == JSON


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, chunked or not, refusing more than `limit` bytes before buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def create_ingest_app(
    settings: Settings, store: Store, producer: IngestProducer, resolver: KeyResolver, limiter: RateLimiter,
    checks: Mapping[str, Check] | None = None,
) -> FastAPI:  # fmt: skip
    """`checks`: more readiness checks (`up` adds its worker's sink)."""
    app = FastAPI(title="LLMScope ingest", version="0.1.0", docs_url=None)
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app, "ingest")
    install_error_handlers(app, {OTLP_PREFIX: _otlp_error})
    install_docs(app)  # offline Swagger UI + API-key security schemes
    limits = TenantLimits(store, settings)
    refusals = EarlyRefusals()

    def refuse_early(request: Request, principal: Principal) -> None:
        """429 before the body is read, while the key's last charge says no request can pass."""
        quota = refusals.refusal(principal.tenant_id, principal.key_prefix)
        if quota is not None:
            RATE_LIMIT_DECISIONS.labels("limited").inc()
            request.state.rate_limit_headers = quota.headers()
            raise quota.denial()

    async def charge(request: Request, principal: Principal, spans: int) -> None:
        """Take one request and `spans` spans from the key's and the tenant's budgets, or raise 429.
        Charged once the body is decoded (its span count is known), before anything is produced."""
        tenant = principal.tenant_id
        quota = await limiter.acquire(tenant, principal.key_prefix, spans, limits.get(tenant))
        if quota is None:
            RATE_LIMIT_DECISIONS.labels("fail_open").inc()  # Redis did not answer: let it through
            return
        refusals.note(tenant, principal.key_prefix, quota)
        request.state.rate_limit_headers = quota.headers()
        RATE_LIMIT_DECISIONS.labels("allowed" if quota.allowed else "limited").inc()
        if not quota.allowed:
            raise quota.denial()

    app.add_middleware(RateLimitHeaders)

    @app.post("/v1/traces", summary="OTLP/HTTP trace export (protobuf or JSON)", responses=_otlp_responses())
    async def export_traces(request: Request) -> Response:
        principal = await authenticate(request, resolver, "ingest")
        refuse_early(request, principal)
        raw = await read_body(request, settings.max_body_bytes)
        content_type = request.headers.get("content-type")
        encoding = request.headers.get("content-encoding")
        heavy = len(raw) > (_OFFLOAD_COMPRESSED_BYTES if encoding else _OFFLOAD_BYTES) or _wants_json(request)
        args = (raw, content_type, encoding, settings, time.time_ns())
        validated, chunks = await asyncio.to_thread(_decode, *args) if heavy else _decode(*args)
        await charge(request, principal, validated.accepted + validated.rejected)
        if chunks:
            received = time.time_ns()
            await asyncio.gather(
                *(producer.send(IngestMessage(principal.tenant_id, FORMAT_OTLP_TRACES, received, c)) for c in chunks)
            )
        _count(FORMAT_OTLP_TRACES, validated.accepted, validated.rejected_by)
        as_json = _wants_json(request)
        body = encode_export_response(validated.rejected, validated.error_message, as_json)
        return Response(body, media_type=JSON if as_json else PROTOBUF)

    @app.post(
        "/api/v1/events",
        summary="Submit SDK events (one event, or a batch as {\"events\": [...]}); JSON, gzip allowed",
        responses=ERROR_RESPONSES,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": EventBatch.model_json_schema()}}}},
    )
    async def submit_events(request: Request) -> JSONResponse:
        principal = await authenticate(request, resolver, "ingest")
        refuse_early(request, principal)
        if not _wants_json(request):
            raise UnsupportedMediaType("events must be sent as application/json")
        raw = await read_body(request, settings.events_max_bytes)
        body = decompress(raw, request.headers.get("content-encoding"), settings.events_max_bytes)
        events, rejected = parse_events(body, settings.events_max_count)
        await charge(request, principal, len(events) + len(rejected))
        received = time.time_ns()
        await asyncio.gather(
            *(
                producer.send(IngestMessage(principal.tenant_id, FORMAT_SDK_EVENTS, received, value))
                for value in encode_event_messages(events, settings.max_message_bytes)
            )
        )
        _count(FORMAT_SDK_EVENTS, len(events), {"invalid_event": len(rejected)} if rejected else {})
        return JSONResponse({"accepted": len(events), "rejected": rejected})

    async def broker() -> bool:
        if not await producer.reachable():
            raise CheckFailed(f"Kafka at {settings.kafka_bootstrap_servers} does not answer: {producer.last_error}")
        return True

    all_checks = {"broker": broker, "store": store_answers(store), **(checks or {})}
    install_health(app, all_checks, "Readiness: broker and store reachable")
    return app


def _count(fmt: str, accepted: int, rejected_by: dict[str, int]) -> None:
    """Counted once the broker acknowledged: a request that fails is retried and counted then."""
    SPANS_ACCEPTED.labels(fmt).inc(accepted)
    for reason, count in rejected_by.items():
        SPANS_REJECTED.labels(fmt, reason).inc(count)


def _otlp_error(request: Request, status: int, code: str, message: str, retry_after: int | None) -> Response:
    as_json = _wants_json(request)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    body = encode_status(GRPC_CODE.get(status, 13), message, as_json)
    return Response(body, status_code=status, media_type=JSON if as_json else PROTOBUF, headers=headers)


def _decode(
    raw: bytes, content_type: str | None, encoding: str | None, settings: Settings, now_ns: int
) -> tuple[Validated, list[bytes]]:
    """Body to validated spans and the Kafka message values that carry the accepted ones."""
    body = decompress(raw, encoding, settings.max_body_bytes)
    request = decode_traces(body, content_type)
    spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if spans > settings.max_spans_per_request:
        raise PayloadTooLarge(
            f"{spans} spans in one request; at most {settings.max_spans_per_request}: export smaller batches"
        )
    validated = validate_spans(
        request,
        now_ns=now_ns,
        max_past_ns=settings.retention_days * NS_PER_DAY,  # older spans would be dropped by the TTL at once
        max_span_bytes=settings.max_message_bytes // 2,
    )
    if not validated.accepted:
        return validated, []
    return validated, split_request(validated.request, settings.max_message_bytes, settings.max_spans_per_message)
