"""The rows of budgets and of the thresholds they crossed (migration 0014), and the one way their
spend is summed. The query API writes budgets and reads spend; the worker's budget evaluator reads
both and writes the threshold records; neither knows the other's code.

Spend is the exact sum (Decimal(76, 12), read back as text) of the known costs of the scope's model
calls over [start, end): from the rollups for `tenant` and `model` budgets (model is a rollup
dimension; ranges split at the compaction watermarks exactly as the analytics do, so the figure is
the analytics API's cost_usd to the last digit), from `spans FINAL` for `user_id` and `tag` budgets,
which are not rollup dimensions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from llmscope.storage import Store
from schemas.alert_events import BudgetThresholdEvent, parse_event
from schemas.budgets import Budget, UsageScope
from schemas.operations import model_call_sql
from schemas.rollup import ROLLUP_LEVELS, segments, sum_sql
from schemas.times import EPOCH, utc

_FMT = "%Y-%m-%d %H:%M:%S"
# The tag budget's filter: SDK events keep their tags as a JSON array in this attribute.
TAGS_ATTRIBUTE = "llmscope.tags"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredBudget:
    tenant_id: str
    budget: Budget


# --- budgets ---


def write_budget(store: Store, tenant_id: str, budget: Budget, deleted: bool = False) -> None:
    store.insert_rows(f"{store.database}.budgets", [{
        "tenant_id": tenant_id, "budget_id": budget.id, "budget": budget.model_dump_json(),
        "deleted": int(deleted), "version": time.time_ns(),
    }])


def read_budget(store: Store, tenant_id: str, budget_id: str) -> Budget | None:
    """One live budget of the tenant; None if it never existed, was deleted or is another tenant's."""
    rows = store.query(
        f"SELECT budget FROM {store.database}.budgets FINAL "
        "WHERE tenant_id = {t:String} AND budget_id = {b:String} AND deleted = 0",
        {"t": tenant_id, "b": budget_id},
    ).to_dicts()
    return Budget.model_validate_json(rows[0]["budget"]) if rows else None


def list_budgets(store: Store, tenant_id: str) -> list[Budget]:
    """The tenant's live budgets, oldest first."""
    rows = store.query(
        f"SELECT budget FROM {store.database}.budgets FINAL WHERE tenant_id = {{t:String}} AND deleted = 0",
        {"t": tenant_id},
    ).to_dicts()
    return sorted((Budget.model_validate_json(r["budget"]) for r in rows), key=lambda b: (b.created_at, b.id))


def all_budgets(store: Store) -> list[StoredBudget]:
    """Every tenant's live budgets (the evaluator's work list)."""
    rows = store.query(
        f"SELECT tenant_id, budget FROM {store.database}.budgets FINAL WHERE deleted = 0"
    ).to_dicts()
    out = []
    for r in rows:
        try:
            out.append(StoredBudget(r["tenant_id"], Budget.model_validate_json(r["budget"])))
        except ValidationError as exc:  # one unreadable row must not stop every tenant's budgets
            log.error("budget row of tenant %s is not a budget, skipped: %s", r["tenant_id"], exc)
    return out


# --- spend ---


def spend(store: Store, tenant_id: str, what: UsageScope, start: datetime, end: datetime,
          marks: Mapping[str, datetime]) -> Decimal:
    """The exact known cost of the scope's model calls over [start, end). `marks` are the
    compaction watermarks (level -> rows complete before; schemas/rollup.py read_watermarks);
    rollup ranges are whole minutes, so `start` and `end` must be too."""
    params: dict[str, Any] = {"tenant": tenant_id}
    where = f"tenant_id = {{tenant:String}} AND {model_call_sql()}"
    if what.scope != "tenant":
        params["scope"] = what.scope_value
        where += {
            "model": " AND model = {scope:String}",
            "user_id": " AND user_id = {scope:String}",
            "tag": f" AND has(JSONExtract(attributes['{TAGS_ATTRIBUTE}'], 'Array(String)'), {{scope:String}})",
        }[what.scope]
    if what.scope in ("user_id", "tag"):
        params |= {"lo": utc(start).strftime(_FMT), "hi": utc(end).strftime(_FMT)}
        sql = (f"SELECT {sum_sql('cost_usd', 'coalesce(cost_usd, toDecimal128(0, 12))')} "
               f"FROM {store.database}.spans FINAL WHERE {where} "
               "AND start_time >= {lo:DateTime64(9, 'UTC')} AND start_time < {hi:DateTime64(9, 'UTC')}")
    else:
        levels = [(table, col, step, marks.get(col, EPOCH) if col != "minute" else utc(end))
                  for table, col, step in ROLLUP_LEVELS]
        parts = []
        for i, (table, col, lo, hi) in enumerate(segments(utc(start), utc(end), levels)):
            params |= {f"lo{i}": lo.strftime(_FMT), f"hi{i}": hi.strftime(_FMT)}
            parts.append(f"SELECT {sum_sql('cost_usd')} FROM {store.database}.{table} FINAL WHERE {where} "
                         f"AND {col} >= {{lo{i}:DateTime('UTC')}} AND {col} < {{hi{i}:DateTime('UTC')}}")
        if not parts:
            return Decimal(0)
        sql = f"SELECT sum(cost_usd) AS cost_usd FROM ({' UNION ALL '.join(parts)})"
    text = store.query(f"SELECT toString(cost_usd) AS cost FROM ({sql})", params)["cost"][0]
    return Decimal(text or 0)


# --- budget_thresholds: the outbox of threshold events ---


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


Crossing = tuple[str, datetime, BudgetThresholdEvent]  # (tenant, crossing key, event)


def read_crossings(store: Store, since: datetime) -> dict[tuple[str, str], set[tuple[datetime, int, Decimal]]]:
    """(tenant, budget) -> {(crossing key, threshold, limit)} of the crossings recorded with a key at
    or after `since` (older ones can no longer be current)."""
    rows = store.query(
        f"SELECT tenant_id, budget_id, toUnixTimestamp(period_key) AS key, threshold, toString(limit_usd) AS limit_usd "
        f"FROM {store.database}.budget_thresholds FINAL WHERE period_key >= {{since:DateTime('UTC')}}",
        {"since": utc(since).strftime(_FMT)},
    ).to_dicts()
    out: dict[tuple[str, str], set[tuple[datetime, int, Decimal]]] = {}
    for r in rows:
        out.setdefault((r["tenant_id"], r["budget_id"]), set()).add(
            (_time(r["key"]), int(r["threshold"]), Decimal(r["limit_usd"])))
    return out


def record_crossings(store: Store, crossings: list[Crossing], sent: bool) -> None:
    """Write crossings: unsent before their events go out, sent once the broker has them."""
    if not crossings:
        return
    version = time.time_ns()
    store.insert_rows(f"{store.database}.budget_thresholds", [{
        "tenant_id": tenant, "budget_id": e.data.budget_id, "period_key": key.strftime(_FMT),
        "threshold": e.data.threshold, "limit_usd": e.data.limit_usd, "event_id": e.id,
        "event": e.model_dump_json(), "fired_at": e.timestamp.timestamp(), "sent": int(sent), "version": version,
    } for tenant, key, e in crossings])


def unsent_crossings(store: Store) -> list[Crossing]:
    """Crossings recorded but not known to be on the events topic, oldest first."""
    rows = store.query(
        f"SELECT tenant_id, toUnixTimestamp(period_key) AS key, event FROM {store.database}.budget_thresholds FINAL "
        "WHERE sent = 0 ORDER BY fired_at, threshold"
    ).to_dicts()
    out = []
    for r in rows:
        event = parse_event(r["event"])
        assert isinstance(event, BudgetThresholdEvent)
        out.append((r["tenant_id"], _time(r["key"]), event))
    return out
