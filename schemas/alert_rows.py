"""The rows of alert rules, their evaluation state and the alerts they raise (migration 0008), with
the one reader and writer of each: the query API writes rules and reads alerts, the worker's alert
evaluator reads rules and writes state and alerts, and neither knows the other's code.

Rules and states are versioned by the nanoseconds of the write (ReplacingMergeTree, read FINAL):
the newest write wins. A deleted rule is a tombstone that keeps its last body, so the evaluator can
resolve its firing alerts with the rule's name. Alerts are keyed by their deterministic id and
versioned by status (firing 1, resolved 2), so a replayed tick rewrites identical rows.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from llmscope.storage import Store
from schemas.alert_events import AlertData
from schemas.alerts import AlertRule

_FMT = "%Y-%m-%d %H:%M:%S"
ALERT_VERSIONS = {"firing": 1, "resolved": 2}

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredRule:
    tenant_id: str
    rule: AlertRule
    deleted: bool


# --- alert_rules ---


def write_rule(store: Store, tenant_id: str, rule: AlertRule, deleted: bool = False) -> None:
    store.insert_rows(f"{store.database}.alert_rules", [{
        "tenant_id": tenant_id, "rule_id": rule.id, "rule": rule.model_dump_json(by_alias=True),
        "deleted": int(deleted), "version": time.time_ns(),
    }])


def read_rule(store: Store, tenant_id: str, rule_id: str, include_deleted: bool = False) -> AlertRule | None:
    """One live rule of the tenant (or its last body, if deleted and `include_deleted`); None if it
    never existed or was deleted."""
    rows = store.query(
        f"SELECT rule FROM {store.database}.alert_rules FINAL "
        "WHERE tenant_id = {t:String} AND rule_id = {r:String}" + ("" if include_deleted else " AND deleted = 0"),
        {"t": tenant_id, "r": rule_id},
    ).to_dicts()
    return AlertRule.model_validate_json(rows[0]["rule"]) if rows else None


def list_rules(store: Store, tenant_id: str) -> list[AlertRule]:
    """The tenant's live rules, oldest first."""
    rows = store.query(
        f"SELECT rule FROM {store.database}.alert_rules FINAL WHERE tenant_id = {{t:String}} AND deleted = 0",
        {"t": tenant_id},
    ).to_dicts()
    rules = [AlertRule.model_validate_json(r["rule"]) for r in rows]
    return sorted(rules, key=lambda r: (r.created_at, r.id))


def all_rules(store: Store) -> list[StoredRule]:
    """Every tenant's rules, tombstones included (the evaluator closes what deleted rules left firing)."""
    rows = store.query(f"SELECT tenant_id, rule, deleted FROM {store.database}.alert_rules FINAL").to_dicts()
    out = []
    for r in rows:
        try:
            out.append(StoredRule(r["tenant_id"], AlertRule.model_validate_json(r["rule"]), bool(r["deleted"])))
        except ValidationError as exc:  # one unreadable row must not stop every tenant's alerts
            log.error("alert rule row of tenant %s is not a rule, skipped: %s", r["tenant_id"], exc)
    return out


# --- alert_state ---


def read_states(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """(tenant, rule id) -> the saved RuleState dict, for every rule that has one."""
    rows = store.query(
        f"SELECT tenant_id, rule_id, state FROM {store.database}.alert_state FINAL WHERE deleted = 0"
    ).to_dicts()
    return {(r["tenant_id"], r["rule_id"]): json.loads(r["state"]) for r in rows}


def write_states(store: Store, states: list[tuple[str, str, dict[str, Any] | None]]) -> None:
    """Save (tenant, rule id, state) in one insert; a state of None forgets the rule's state."""
    version = time.time_ns()
    store.insert_rows(f"{store.database}.alert_state", [{
        "tenant_id": tenant, "rule_id": rule_id, "state": json.dumps(state) if state is not None else "",
        "deleted": int(state is None), "version": version,
    } for tenant, rule_id, state in states])


# --- alerts ---


def alert_row(tenant_id: str, alert: AlertData) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "alert_id": alert.alert_id, "rule_id": alert.rule.id, "status": alert.status,
        "group_key": alert.group or "", "fired_at": alert.fired_at.strftime(_FMT),
        "resolved_at": alert.resolved_at.strftime(_FMT) if alert.resolved_at else None,
        "data": alert.model_dump_json(), "version": ALERT_VERSIONS[alert.status],
    }


def write_alerts(store: Store, rows: list[dict[str, Any]]) -> None:
    store.insert_rows(f"{store.database}.alerts", rows)


def encode_cursor(fired_at: datetime, alert_id: str) -> str:
    raw = f"{int(fired_at.timestamp())}:{alert_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str] | None:
    """(fired_at seconds, alert id) of a cursor from `encode_cursor`; None if it is not one."""
    try:
        seconds, _, alert_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        at = int(seconds)
    except ValueError:
        return None
    return (at, alert_id) if 0 <= at < 2**32 else None  # a DateTime's range


def list_alerts(
    store: Store, tenant_id: str, start: datetime, end: datetime, *, rule_id: str | None = None,
    status: str | None = None, cursor: tuple[int, str] | None = None, limit: int = 100,
) -> list[AlertData]:
    """The tenant's alerts active at some time in [start, end), newest fire first."""
    where = ["tenant_id = {t:String}", "fired_at < {end:DateTime('UTC')}",
             "(resolved_at IS NULL OR resolved_at >= {start:DateTime('UTC')})"]
    params: dict[str, Any] = {"t": tenant_id, "start": start.astimezone(timezone.utc).strftime(_FMT),
                              "end": end.astimezone(timezone.utc).strftime(_FMT), "limit": limit}
    if rule_id is not None:
        where.append("rule_id = {rule:String}")
        params["rule"] = rule_id
    if status is not None:
        where.append("status = {status:String}")
        params["status"] = status
    if cursor is not None:
        where.append("(toUnixTimestamp(fired_at), alert_id) < ({c_at:Int64}, {c_id:String})")
        params["c_at"], params["c_id"] = cursor
    rows = store.query(
        f"SELECT data FROM {store.database}.alerts FINAL WHERE {' AND '.join(where)} "
        "ORDER BY fired_at DESC, alert_id DESC LIMIT {limit:UInt32}",
        params,
    ).to_dicts()
    return [AlertData.model_validate_json(r["data"]) for r in rows]
