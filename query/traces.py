"""Traces: list with filters and cursor pagination, and one trace with all its spans."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from llmscope.errors import BadRequest, NotFound
from query.deps import Reader, SpanFilters, StoreDep, TimeRange
from query.envelope import Envelope, Page
from schemas.live import content_text
from schemas.operations import ALL_OPERATIONS, model_call_sql
from schemas.times import from_ns

router = APIRouter(prefix="/api/v1/traces", tags=["traces"])
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
# A trace's figures count its model calls, as the analytics do (schemas/operations.py), in sums
# that cannot wrap (schemas/rollup.py).
_MODEL_CALL = model_call_sql()


class TraceSummary(BaseModel):
    trace_id: str
    root_span_name: str
    service: str
    start_time: datetime
    duration_ms: float
    span_count: int = Field(description="Every span of the trace received so far.")
    requests: int = Field(description="The trace's model calls (the analytics' default `requests`).")
    input_tokens: int = Field(description="Sum over the trace's model calls, as the analytics count tokens.")
    output_tokens: int = Field(description="Sum over the trace's model calls.")
    cost_usd: float | None = Field(description="Sum of the model calls' known costs; null when none is known.")
    status: str


class TracePage(Page[TraceSummary]):
    pass


class SpanEventOut(BaseModel):
    time: datetime
    name: str
    attributes: dict[str, str]


class SpanOut(BaseModel):
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    operation: str
    model: str
    provider: str
    start_time: datetime
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    price_source: str
    model_version: str
    pii_counts: dict[str, int]
    status: str
    status_message: str
    session_id: str
    user_id: str
    input: str = Field(description="The span's (redacted) input as text, from whichever convention carried it.")
    output: str = Field(description="The span's (redacted) output as text.")
    attributes: dict[str, str]
    resource_attributes: dict[str, str]
    events: list[SpanEventOut]


class TraceDetail(BaseModel):
    trace_id: str
    spans: list[SpanOut]


class TraceResponse(Envelope[TraceDetail]):
    pass


def _encode_cursor(start_ns: int, trace_id: str) -> str:
    return base64.urlsafe_b64encode(f"{start_ns}:{trace_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        start, trace_id = raw.split(":", 1)
        if not _HEX32.match(trace_id):
            raise ValueError
        return int(start), trace_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass next_cursor from a previous page unchanged") from None


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {item["key"]: item["value"] for item in value or []}


@router.get("", response_model=TracePage, summary="List traces, newest first")
async def list_traces(
    principal: Reader,
    store: StoreDep,
    window: Annotated[TimeRange, Depends()],
    filters: Annotated[SpanFilters, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> TracePage:
    params: dict[str, Any] = {"tenant": principal.tenant_id, **window.params(), "limit": limit + 1}
    having = []
    for column, value in filters.given().items():
        if column == "operation" and value == ALL_OPERATIONS:
            continue
        if column == "status_code":  # the trace's status: error if any span failed, else ok if any is ok
            params["status"] = value
            having.append("status = {status:String}")
        else:  # a trace matches when any of its spans matches
            params[column] = value
            having.append(f"countIf({column} = {{{column}:String}}) > 0")
    if cursor:
        params["cursor_ns"], params["cursor_trace"] = _decode_cursor(cursor)
        having.append("(start_ns, trace_id) < ({cursor_ns:Int64}, {cursor_trace:String})")
    sql = f"""
        SELECT
            trace_id,
            toUnixTimestamp64Nano(min(start_time)) AS start_ns,
            toUnixTimestamp64Nano(max(end_time)) AS end_ns,
            argMin(name, (parent_span_id != '', start_time)) AS root_span_name,
            argMin(service_name, (parent_span_id != '', start_time)) AS service,
            count() AS span_count,
            countIf({_MODEL_CALL}) AS requests,
            sumIf(toDecimal128(input_tokens, 0), {_MODEL_CALL}) AS input_tokens,
            sumIf(toDecimal128(output_tokens, 0), {_MODEL_CALL}) AS output_tokens,
            toFloat64(sumIf(toDecimal256(cost_usd, 12), {_MODEL_CALL})) AS cost_usd,
            multiIf(countIf(status_code = 'error') > 0, 'error', countIf(status_code = 'ok') > 0, 'ok', 'unset') AS status
        FROM {store.database}.spans FINAL
        WHERE tenant_id = {{tenant:String}}
          AND start_time >= {{start:DateTime64(9, 'UTC')}} AND start_time < {{end:DateTime64(9, 'UTC')}}
        GROUP BY trace_id
        {"HAVING " + " AND ".join(having) if having else ""}
        ORDER BY start_ns DESC, trace_id DESC
        LIMIT {{limit:UInt32}}
    """
    rows = (await store.aquery(sql, params)).to_dicts()
    page, more = rows[:limit], len(rows) > limit
    items = [
        TraceSummary(
            trace_id=r["trace_id"],
            root_span_name=r["root_span_name"],
            service=r["service"],
            start_time=from_ns(r["start_ns"]),
            duration_ms=(r["end_ns"] - r["start_ns"]) / 1e6,
            span_count=r["span_count"],
            requests=r["requests"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cost_usd=r["cost_usd"],
            status=r["status"],
        )
        for r in page
    ]
    next_cursor = _encode_cursor(page[-1]["start_ns"], page[-1]["trace_id"]) if more and page else None
    return TracePage(data=items, next_cursor=next_cursor)


@router.get("/{trace_id}", response_model=TraceResponse, summary="One trace with every span")
async def get_trace(trace_id: str, principal: Reader, store: StoreDep) -> TraceResponse:
    if not _HEX32.match(trace_id):
        raise BadRequest("trace_id must be 32 hexadecimal characters")
    trace_id = trace_id.lower()
    sql = f"""
        SELECT span_id, parent_span_id, name, kind, service_name, operation, model, provider,
               toUnixTimestamp64Nano(start_time) AS start_ns, duration_ns,
               input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_usd,
               price_source, model_version, pii_counts, status_code, status_message, session_id, user_id, attributes, resource_attributes,
               arrayMap(e -> (toUnixTimestamp64Nano(e.1), e.2, e.3), events) AS events
        FROM {store.database}.spans FINAL
        WHERE tenant_id = {{tenant:String}} AND trace_id = {{trace_id:String}}
        ORDER BY start_time, span_id
    """
    rows = (await store.aquery(sql, {"tenant": principal.tenant_id, "trace_id": trace_id})).to_dicts()
    if not rows:
        raise NotFound(f"trace {trace_id} not found")
    spans = [
        SpanOut(
            span_id=r["span_id"],
            parent_span_id=r["parent_span_id"] or None,
            name=r["name"],
            kind=r["kind"],
            service=r["service_name"],
            operation=r["operation"],
            model=r["model"],
            provider=r["provider"],
            start_time=from_ns(r["start_ns"]),
            duration_ms=r["duration_ns"] / 1e6,
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cached_input_tokens=r["cached_input_tokens"],
            cache_write_tokens=r["cache_write_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            cost_usd=_money(r["cost_usd"]),
            price_source=r["price_source"],
            model_version=r["model_version"],
            pii_counts=_as_dict(r["pii_counts"]),
            status=r["status_code"],
            status_message=r["status_message"],
            session_id=r["session_id"],
            user_id=r["user_id"],
            input=content_text(_as_dict(r["attributes"]), "input"),
            output=content_text(_as_dict(r["attributes"]), "output"),
            attributes=_as_dict(r["attributes"]),
            resource_attributes=_as_dict(r["resource_attributes"]),
            events=[_event(e) for e in r["events"]],
        )
        for r in rows
    ]
    return TraceResponse(data=TraceDetail(trace_id=trace_id, spans=spans))


def _event(e: Any) -> SpanEventOut:
    values = list(e.values()) if isinstance(e, dict) else list(e)
    return SpanEventOut(time=from_ns(values[0]), name=values[1], attributes=_as_dict(values[2]))
