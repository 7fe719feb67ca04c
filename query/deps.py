"""Dependencies the routers share: the caller's tenant (from the API key), the store, the time range
and the span filters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ValidationError

from llmscope.auth import Principal
from llmscope.errors import BadRequest, Forbidden, NotFound
from llmscope.http import authenticate
from llmscope.storage import Store
from schemas.alerts import validation_message
from schemas.times import EARLIEST_QUERY, LATEST_QUERY, utc

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def reader(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "read")


async def admin(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "admin")


async def alerts_writer(request: Request) -> Principal:
    return await authenticate(request, request.app.state.resolver, "alerts", "admin")


def store(request: Request) -> Store:
    found: Store = request.app.state.store
    return found


Reader = Annotated[Principal, Depends(reader)]
Admin = Annotated[Principal, Depends(admin)]
AlertsWriter = Annotated[Principal, Depends(alerts_writer)]
StoreDep = Annotated[Store, Depends(store)]


_OUT_OF_RANGE = (
    f"start and end must be between {EARLIEST_QUERY:%Y-%m-%d} and {LATEST_QUERY:%Y-%m-%d} (the span store's time range)"
)


def within_store_range(value: datetime) -> datetime:
    """`value` in UTC, or a 400 if the span store's time range cannot hold it."""
    try:
        # Converting an offset date at the edge of Python's datetime range overflows.
        value = utc(value)
    except OverflowError:
        raise BadRequest(_OUT_OF_RANGE) from None
    if not EARLIEST_QUERY <= value <= LATEST_QUERY:
        raise BadRequest(_OUT_OF_RANGE)
    return value


class TimeRange:
    """`start`/`end` (RFC 3339 or Unix seconds); defaults to the last 24 hours."""

    def __init__(
        self,
        start: Annotated[datetime | None, Query(description="Inclusive start (RFC 3339 or Unix seconds).")] = None,
        end: Annotated[datetime | None, Query(description="Exclusive end; default now.")] = None,
    ) -> None:
        self.end = within_store_range(end) if end else datetime.now(timezone.utc) + timedelta(minutes=1)
        self.start = within_store_range(start) if start else self.end - timedelta(days=1)
        if self.start >= self.end:
            raise BadRequest("start must be before end")

    def params(self) -> dict[str, str]:
        fmt = "%Y-%m-%d %H:%M:%S.%f"
        return {"start": self.start.strftime(fmt), "end": self.end.strftime(fmt)}


class SpanFilters:
    """The filters traces and metrics both take; each one given must match. Traces: a trace matches
    when any of its spans matches each filter, and `status` is the whole trace's. Metrics: the spans
    counted are those matching every filter."""

    def __init__(
        self,
        service: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        operation: Annotated[str | None, Query(description=(
            "Metrics: omitted, only model calls count (chat, text_completion, generate_content, embeddings, "
            "OpenInference llm, and spans that name a model without an operation); a name (invoke_agent, "
            "execute_tool, chain…) counts only spans of that operation; `*` counts every span. "
            "Traces: a trace matches when any of its spans has this operation; `*` matches every trace."
        ))] = None,
        status: Literal["ok", "error", "unset"] | None = None,
        session_id: str | None = None,
        user_id: str | None = None,
        prompt_name: str | None = None,
    ) -> None:
        self.columns = {
            "service_name": service, "model": model, "provider": provider, "operation": operation,
            "status_code": status, "session_id": session_id, "user_id": user_id, "prompt_name": prompt_name,
        }  # fmt: skip

    def given(self) -> dict[str, str]:
        """spans-table column -> value, for the filters given."""
        return {c: v for c, v in self.columns.items() if v is not None}


def manageable(principal: Principal, tenant_id: str | None) -> str:
    """The tenant an admin request acts on: `tenant_id` if given, else the key's own. An `admin` key
    manages its own tenant only; a `superadmin` key manages every tenant."""
    target = tenant_id or principal.tenant_id
    if target != principal.tenant_id and not principal.superadmin:
        raise Forbidden(f"this API key manages tenant '{principal.tenant_id}' only; another tenant needs a superadmin key")
    return target


def require_superadmin(principal: Principal, what: str) -> None:
    if not principal.superadmin:
        raise Forbidden(f"{what} needs a key with the 'superadmin' scope (made with `llmscope create-key`)")


def parsed(model: type[M], body: Any) -> M:
    """`body` (plain JSON) as `model`, or a 400 whose message names each bad field and the fix. Bodies
    read as plain JSON let the contracts' own messages reach the caller as they are."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(validation_message(exc)) from None


async def existing(read: Callable[[Store, str, str], T | None], noun: str, store: Store, tenant_id: str,
                   item_id: str) -> T:
    """The tenant's `item_id` as `read` finds it (in a thread: store reads block), or a 404 naming the `noun`."""
    found = await asyncio.to_thread(read, store, tenant_id, item_id)
    if found is None:
        raise NotFound(f"no {noun} {item_id!r}")
    return found
