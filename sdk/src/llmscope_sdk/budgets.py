"""Budget checks against the LLMScope query API, for an application that decides before a model call.

`budget_status` asks `GET {query_endpoint}/api/v1/budgets/{id}/status` (a key with the `read` scope;
the server answers from a cache in milliseconds) and raises BudgetCheckFailed when it gets no status:
the caller chooses what an unknown budget means. `within_budget` makes that choice for you:
`default` (True: fail open, calls go on) when the status cannot be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

import httpx


class BudgetCheckFailed(Exception):
    """No status: the query API was unreachable, refused the key, or knows no such budget (`status` is
    the HTTP status, None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BudgetStatus:
    budget_id: str
    name: str
    within_budget: bool
    spent_usd: Decimal
    limit_usd: Decimal
    remaining_usd: Decimal
    percent: float
    forecast_usd: Decimal
    period_start: datetime
    period_end: datetime
    as_of: datetime


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fetch_status(query_endpoint: str, api_key: str, budget_id: str, timeout: float) -> BudgetStatus:
    url = f"{query_endpoint}/api/v1/budgets/{quote(budget_id, safe='')}/status"
    try:
        r = httpx.get(url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BudgetCheckFailed(f"budget status of {budget_id}: {exc!r}") from None
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise BudgetCheckFailed(f"budget status of {budget_id}: {r.status_code} {message}", r.status_code)
    d = r.json()["data"]
    return BudgetStatus(
        budget_id=d["budget_id"], name=d["name"], within_budget=bool(d["within_budget"]),
        spent_usd=Decimal(d["spent_usd"]), limit_usd=Decimal(d["limit_usd"]),
        remaining_usd=Decimal(d["remaining_usd"]), percent=float(d["percent"]),
        forecast_usd=Decimal(d["forecast_usd"]), period_start=_time(d["period_start"]),
        period_end=_time(d["period_end"]), as_of=_time(d["as_of"]),
    )
