"""The budget contract: a tenant's spending limit in USD over a period, what it counts, and how its
status and threshold events are derived from the spend. Pure: no I/O (schemas/budget_rows.py reads
and writes the rows and sums the spend).

- `limit_usd`: exact (Decimal, up to 12 decimal places, as the spans' costs).
- `scope`: what the budget counts: `tenant` (every model call of the tenant), `model` (one
  normalised model name), `user_id` (the user in effect for a span, inherited included) or `tag`
  (a tag of SDK events, stored as the `llmscope.tags` attribute). Spans carry no API key, so a
  per-key budget is not offered. Spend is the analytics API's `cost_usd`: model calls only.
- `period`: `monthly` (the calendar month in UTC) or `rolling` over `window` (whole hours or days,
  1h to 90d, ending now).
- `thresholds`: percents of the limit (default 50, 80, 100) that each emit one `budget.threshold`
  event per period. A rolling budget's "period" for a threshold is the window that follows its
  crossing: it fires again only once a whole window has passed. Changing the limit re-arms the
  thresholds (the record of a crossing names the limit it was crossed at).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from schemas.alert_events import BudgetThresholdData, BudgetThresholdEvent, event_id
from schemas.alerts import Name
from schemas.times import ceil_to, utc

SCOPES = ("tenant", "model", "user_id", "tag")
Scope = Literal["tenant", "model", "user_id", "tag"]
Period = Literal["monthly", "rolling"]
DEFAULT_THRESHOLDS = (50, 80, 100)
MIN_WINDOW, MAX_WINDOW = 3600, 90 * 86400
# The forecast's rate: the spend of the last day (or of the period so far, if shorter), per second;
# never over less than an hour, so the first minutes of a month do not extrapolate one call.
RATE_WINDOW, MIN_RATE_SECONDS = timedelta(days=1), 3600
_WINDOW = re.compile(r"^(\d{1,4})([hd])$")

Usd = Annotated[Decimal, Field(gt=0, max_digits=38, decimal_places=12,
                               description="USD, exact: a JSON number or a decimal string.")]
ScopeValue = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]


def parse_window(text: str) -> int:
    """'7d' -> 604800: whole hours or days from 1h to 90d; ValueError says what is wrong."""
    match = _WINDOW.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a window: write a whole number of hours or days, like '12h' or '30d'")
    seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValueError(f"{text!r} is outside 1h..90d")
    return seconds


def new_budget_id() -> str:
    """Unique for all time (threshold event ids hash it); no '.', so it is safe inside webhook ids."""
    return "bud_" + secrets.token_hex(12)


class UsageScope(BaseModel):
    """What spend is summed over: which model calls (scope) and which period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope = "tenant"
    scope_value: ScopeValue | None = Field(
        None, description="The model, user id or tag counted; none for scope 'tenant'.")
    period: Period = "monthly"
    window: str | None = Field(None, description="A rolling period's window: '12h', '7d', … (1h to 90d).")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
            return value.strip()
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if (self.scope == "tenant") != (self.scope_value is None):
            raise ValueError("scope_value names the model, user_id or tag counted; give it for those scopes "
                             "and leave it out for scope 'tenant'")
        if (self.period == "rolling") != (self.window is not None):
            raise ValueError("window is the length of a rolling period ('7d'); give it with period 'rolling' "
                             "and leave it out for 'monthly'")
        return self

    def period_at(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the period in effect at `now`: the calendar month in UTC, or the window
        ending at the end of now's minute (the minute rollups hold the minute so far)."""
        now = utc(now)
        if self.period == "monthly":
            start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            return start, (start + timedelta(days=32)).replace(day=1)
        assert self.window is not None
        end = ceil_to(now, 60)
        return end - timedelta(seconds=parse_window(self.window)), end

    def rate_range(self, now: datetime) -> tuple[datetime, datetime]:
        """The whole minutes whose spend gives the forecast's rate (see RATE_WINDOW)."""
        start, _ = self.period_at(now)
        end = ceil_to(utc(now), 60)
        return max(start, end - RATE_WINDOW), end


class _Fields(UsageScope):
    name: Name
    limit_usd: Usd
    thresholds: list[int] = Field(
        list(DEFAULT_THRESHOLDS), min_length=1, max_length=10,
        description="Percents of the limit that each send one budget.threshold event per period.")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: list[int]) -> list[int]:
        if any(not 1 <= t <= 1000 for t in value):
            raise ValueError("each threshold is a whole percent from 1 to 1000")
        return sorted(set(value))


class BudgetCreate(_Fields):
    """POST /api/v1/budgets body (and PUT's, which replaces a budget whole)."""


class BudgetUpdate(BaseModel):
    """PATCH body: the given fields replace the budget's, then the whole is validated again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name | None = None
    limit_usd: Usd | None = None
    scope: Scope | None = None
    scope_value: ScopeValue | None = None
    period: Period | None = None
    window: str | None = None
    thresholds: list[int] | None = None

    def merged(self, budget: Budget, now: datetime) -> dict[str, Any]:
        """The budget's fields with the given ones in their place, to validate whole as a `Budget`:
        fields each valid alone can still be a wrong combination (period 'rolling' without a window)."""
        return budget.model_dump() | self.model_dump(exclude_unset=True) | {"updated_at": now}


class Budget(_Fields):
    """A stored budget, as the API returns it and the evaluator reads it."""

    id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(cls, spec: BudgetCreate, now: datetime, budget_id: str | None = None) -> Budget:
        return cls.model_validate(spec.model_dump() | {"id": budget_id or new_budget_id(),
                                                       "created_at": now, "updated_at": now})


class Usage(BaseModel):
    """Spend to date over a scope and period. Money is exact decimal text (USD)."""

    scope: Scope
    scope_value: str | None
    period: Period
    window: str | None
    spent_usd: str
    forecast_usd: str = Field(description=(
        "Monthly: the spend expected by period_end if the rate of the last day (or of the period so far, "
        "counted as at least an hour) goes on. Rolling: what the window would hold at that rate."))
    period_start: datetime
    period_end: datetime
    as_of: datetime


class BudgetStatus(Usage):
    """Spend to date against one budget; `percent` is rounded to 0.01."""

    budget_id: str
    name: str
    within_budget: bool = Field(description="spent_usd < limit_usd: false once the limit is reached.")
    limit_usd: str
    remaining_usd: str = Field(description="limit_usd - spent_usd; negative once over budget.")
    percent: float
    thresholds_reached: list[int]


def fixed(value: Decimal) -> str:
    """Fixed-point text without trailing zeros (str() could say 1E+1)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def percent_of(spent: Decimal, limit: Decimal) -> Decimal:
    return spent * 100 / limit


def usage(what: UsageScope, now: datetime, spent: Decimal, recent: Decimal) -> Usage:
    """Usage at `now` from the period's spend and the spend over `what.rate_range(now)`."""
    start, end = what.period_at(now)
    lo, hi = what.rate_range(now)
    rate = recent / Decimal(max((hi - lo).total_seconds(), MIN_RATE_SECONDS))
    if what.period == "monthly":
        forecast = spent + rate * Decimal(max((end - utc(now)).total_seconds(), 0))
    else:
        forecast = rate * Decimal((end - start).total_seconds())
    return Usage(scope=what.scope, scope_value=what.scope_value, period=what.period, window=what.window,
                 spent_usd=fixed(spent), forecast_usd=fixed(forecast.quantize(Decimal("0.000001"))),
                 period_start=start, period_end=end, as_of=utc(now))


def status(budget: Budget, now: datetime, spent: Decimal, recent: Decimal) -> BudgetStatus:
    """The budget's status at `now` (see usage)."""
    pct = percent_of(spent, budget.limit_usd)
    return BudgetStatus(
        **usage(budget, now, spent, recent).model_dump(), budget_id=budget.id, name=budget.name,
        within_budget=spent < budget.limit_usd, limit_usd=fixed(budget.limit_usd),
        remaining_usd=fixed(budget.limit_usd - spent), percent=float(round(pct, 2)),
        thresholds_reached=[t for t in budget.thresholds if pct >= t],
    )


def crossing_key(budget: Budget, now: datetime) -> datetime:
    """What a crossing at `now` is recorded under: the month's start, or (rolling) the end of the
    window measured, from which the threshold stays quiet for a window."""
    start, end = budget.period_at(now)
    return start if budget.period == "monthly" else end


def due(budget: Budget, spent: Decimal, now: datetime, recorded: set[tuple[datetime, int, Decimal]]) -> list[int]:
    """The thresholds to emit at `now`: reached by `spent` and not yet recorded for this period at
    this limit. `recorded` holds (crossing key, threshold, limit) of the budget's crossings."""
    key = crossing_key(budget, now)
    pct = percent_of(spent, budget.limit_usd)
    out = []
    for t in budget.thresholds:
        if pct < t:
            continue
        keys = [k for k, th, lim in recorded if th == t and lim == budget.limit_usd]
        if budget.period == "monthly" and key not in keys:
            out.append(t)
        elif budget.period == "rolling" and all(k <= key - timedelta(seconds=parse_window(budget.window or ""))
                                                for k in keys):
            out.append(t)
    return out


def threshold_event(budget: Budget, threshold: int, spent: Decimal, now: datetime) -> BudgetThresholdEvent:
    """The event of one crossing at `now`; its id hashes (budget, crossing key, threshold, limit):
    what the record of the crossing is keyed by, so a replay has the same id."""
    start, end = budget.period_at(now)
    where = "tenant-wide" if budget.scope == "tenant" else f"{budget.scope}={budget.scope_value}"
    summary = (f"Budget {budget.name} ({where}) reached {threshold}%: ${spent.quantize(Decimal('0.01'))} "
               f"of ${fixed(budget.limit_usd)} ({budget.period}{' ' + budget.window if budget.window else ''})")
    data = BudgetThresholdData(
        budget_id=budget.id, name=budget.name, scope=budget.scope, scope_value=budget.scope_value,
        period=budget.period, window=budget.window, threshold=threshold, spent_usd=fixed(spent),
        limit_usd=fixed(budget.limit_usd), percent=float(round(percent_of(spent, budget.limit_usd), 2)),
        period_start=start, period_end=end, summary=summary,
    )
    key = crossing_key(budget, now)
    eid = event_id(budget.id, key.isoformat(), str(threshold), fixed(budget.limit_usd))
    return BudgetThresholdEvent(id=eid, timestamp=utc(now), data=data)
