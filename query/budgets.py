"""Budgets (/api/v1/budgets) and usage (/api/v1/usage): a tenant's spending limits, their status and
the spend to date of any scope.

Managing budgets needs the `alerts` or `admin` scope (a budget is an alerting rule on spend: its
thresholds become webhook events), reading them and their status `read`. Every change is in the audit
log (the audit middleware records every mutating request). The worker's budget evaluator picks up a
change at its next tick.

`GET /api/v1/budgets/{id}/status` is meant to be called before a model call, so it answers from the
result cache (Redis across replicas, in process in `up`), refreshed ahead: a status older than
LLMSCOPE_BUDGET_STATUS_CACHE_SECONDS is still answered, while a background task computes the next
one, so only the first call (and the first after a change or a quiet spell of twice that time)
waits for the spend to be summed. A change to the budget through this API drops its status at once
(a refresh already running when it lands may put back one status of the old budget, which the next
refresh replaces).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel

from llmscope.storage import Store
from query.deps import AlertsWriter, Reader, StoreDep, existing, parsed
from query.envelope import Envelope
from schemas.budget_rows import list_budgets, read_budget, spend, write_budget
from schemas.budgets import (
    Budget,
    BudgetCreate,
    BudgetStatus,
    BudgetUpdate,
    Period,
    Scope,
    Usage,
    UsageScope,
    status,
    usage,
)

router = APIRouter(tags=["budgets"])

_EXAMPLE = {"name": "Support bot, gpt-4o, monthly", "limit_usd": "500", "scope": "model", "scope_value": "gpt-4o",
            "period": "monthly", "thresholds": [50, 80, 100]}
BudgetBody = Annotated[dict[str, Any], Body(examples=[_EXAMPLE])]


class BudgetResponse(Envelope[Budget]):
    pass


class BudgetList(Envelope[list[Budget]]):
    pass


class StatusResponse(Envelope[BudgetStatus]):
    pass


class UsageReport(BaseModel):
    usage: Usage
    budgets: list[BudgetStatus]


class UsageResponse(Envelope[UsageReport]):
    pass


def _status_key(request: Request, tenant_id: str, budget_id: str) -> str:
    cache = request.app.state.cache
    return str(cache.key(tenant_id, "budget_status", {"budget_id": budget_id}))


async def _saved(request: Request, store: Store, tenant_id: str, budget: Budget, deleted: bool = False) -> None:
    await asyncio.to_thread(write_budget, store, tenant_id, budget, deleted)
    await request.app.state.cache.forget(_status_key(request, tenant_id, budget.id))


async def _spend(request: Request, store: Store, tenant_id: str, what: UsageScope, now: datetime) -> tuple[Decimal, Decimal]:
    """(spend of the period so far, spend over the forecast's rate range)."""
    marks = await request.app.state.watermarks.get()
    (start, end), (lo, hi) = what.period_at(now), what.rate_range(now)
    spent, recent = await asyncio.gather(asyncio.to_thread(spend, store, tenant_id, what, start, end, marks),
                                         asyncio.to_thread(spend, store, tenant_id, what, lo, hi, marks))
    return spent, recent


async def _status(request: Request, store: Store, tenant_id: str, budget: Budget, now: datetime) -> BudgetStatus:
    return status(budget, now, *await _spend(request, store, tenant_id, budget, now))


@router.post("/api/v1/budgets", status_code=201, response_model=BudgetResponse,
             summary="Create a budget (alerts or admin)")
async def create_budget(body: BudgetBody, principal: AlertsWriter, store: StoreDep, request: Request) -> BudgetResponse:
    budget = Budget.create(parsed(BudgetCreate, body), datetime.now(timezone.utc))
    await _saved(request, store, principal.tenant_id, budget)
    return BudgetResponse(data=budget)


@router.get("/api/v1/budgets", response_model=BudgetList, summary="This tenant's budgets, oldest first")
async def get_budgets(principal: Reader, store: StoreDep) -> BudgetList:
    return BudgetList(data=await asyncio.to_thread(list_budgets, store, principal.tenant_id))


@router.get("/api/v1/budgets/{budget_id}", response_model=BudgetResponse, summary="One budget")
async def get_budget(budget_id: str, principal: Reader, store: StoreDep) -> BudgetResponse:
    return BudgetResponse(data=await existing(read_budget, "budget", store, principal.tenant_id, budget_id))


@router.put("/api/v1/budgets/{budget_id}", response_model=BudgetResponse, summary="Replace a budget (alerts or admin)")
async def put_budget(budget_id: str, body: BudgetBody, principal: AlertsWriter, store: StoreDep,
                     request: Request) -> BudgetResponse:
    old = await existing(read_budget, "budget", store, principal.tenant_id, budget_id)
    spec = parsed(BudgetCreate, body)
    budget = Budget.model_validate(spec.model_dump() | {"id": old.id, "created_at": old.created_at,
                                                        "updated_at": datetime.now(timezone.utc)})
    await _saved(request, store, principal.tenant_id, budget)
    return BudgetResponse(data=budget)


@router.patch("/api/v1/budgets/{budget_id}", response_model=BudgetResponse,
              summary="Change some fields of a budget (alerts or admin)")
async def patch_budget(budget_id: str, body: BudgetBody, principal: AlertsWriter, store: StoreDep,
                       request: Request) -> BudgetResponse:
    old = await existing(read_budget, "budget", store, principal.tenant_id, budget_id)
    update = parsed(BudgetUpdate, body)
    budget = parsed(Budget, update.merged(old, datetime.now(timezone.utc)))
    await _saved(request, store, principal.tenant_id, budget)
    return BudgetResponse(data=budget)


@router.delete("/api/v1/budgets/{budget_id}", status_code=204, summary="Delete a budget (alerts or admin)")
async def delete_budget(budget_id: str, principal: AlertsWriter, store: StoreDep, request: Request) -> Response:
    budget = await existing(read_budget, "budget", store, principal.tenant_id, budget_id)
    await _saved(request, store, principal.tenant_id, budget, deleted=True)
    return Response(status_code=204)


@router.get(
    "/api/v1/budgets/{budget_id}/status", response_model=StatusResponse,
    summary="Whether a budget still has room: check it before a model call (cached)",
    description=("`within_budget` is false once the period's spend reached the limit. Answered from a cache "
                 "refreshed every LLMSCOPE_BUDGET_STATUS_CACHE_SECONDS (5 s): `as_of` says when it was summed."),
)
async def budget_status(budget_id: str, principal: Reader, store: StoreDep, request: Request) -> Response:
    async def compute() -> bytes:
        budget = await existing(read_budget, "budget", store, principal.tenant_id, budget_id)
        found = await _status(request, store, principal.tenant_id, budget, datetime.now(timezone.utc))
        return StatusResponse(data=found).model_dump_json().encode()

    fresh = request.app.state.settings.budget_status_cache_seconds
    key = _status_key(request, principal.tenant_id, budget_id)
    body, _ = await request.app.state.cache.get_or_compute(key, 2 * fresh, compute, refresh_after=fresh)
    return Response(body, media_type="application/json")


@router.get(
    "/api/v1/usage", response_model=UsageResponse,
    summary="Spend to date of a scope, with a forecast, and the status of the budgets over it",
    description=("`usage`: the spend of the given scope and period (default: the whole tenant, this month) and "
                 "its forecast to the period's end. `budgets`: the status of each budget of that scope, or of "
                 "every budget when no scope is given."),
)
async def get_usage(
    principal: Reader, store: StoreDep, request: Request,
    scope: Annotated[Scope | None, Query(description="tenant (default), model, user_id or tag.")] = None,
    scope_value: Annotated[str | None, Query(description="The model, user id or tag.")] = None,
    period: Annotated[Period, Query(description="monthly (calendar month, UTC) or rolling.")] = "monthly",
    window: Annotated[str | None, Query(description="A rolling period's window: '12h', '7d', … (1h to 90d).")] = None,
) -> UsageResponse:
    what = parsed(UsageScope, {"scope": scope or "tenant", "scope_value": scope_value, "period": period,
                               "window": window})
    now = datetime.now(timezone.utc)
    budgets = await asyncio.to_thread(list_budgets, store, principal.tenant_id)
    if scope is not None:
        budgets = [b for b in budgets if (b.scope, b.scope_value) == (what.scope, what.scope_value)]
    used = usage(what, now, *await _spend(request, store, principal.tenant_id, what, now))
    statuses = await asyncio.gather(*(_status(request, store, principal.tenant_id, b, now) for b in budgets))
    return UsageResponse(data=UsageReport(usage=used, budgets=list(statuses)))
