"""The tables behind webhooks (migration 0009) and their one reader and writer each, shared by the
API (endpoints, test deliveries, the deliveries list) and the worker (fan-out and delivery).

- `webhook_endpoints`: one versioned row per endpoint; the newest write wins, `deleted` removes.
- `webhook_deliveries`, the outbox: one row per (event, endpoint). A new row has version 0, every
  later state a nanosecond clock, so inserting a replayed event's row again never resets a row that
  was attempted or delivered (and the fan-out inserts only rows that do not exist yet).
- `webhook_attempts`: every attempt, appended as it happened.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

from llmscope.storage import Store
from llmscope.wakeups import WEBHOOK_OUTBOX, notify
from schemas.alert_events import WebhookEvent, event_json
from schemas.webhooks import PreviousSecret, StoredEndpoint

DeliveryStatus = Literal["pending", "delivered", "failed"]


def _ts(t: datetime) -> str:
    """A DateTime64(3) value as the store reads it: Unix seconds with milliseconds, as text."""
    return f"{t.timestamp():.3f}"


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc)


def _param(t: datetime) -> str:
    """A DateTime64(3, 'UTC') query parameter."""
    return _utc(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --- webhook_endpoints ---

_ENDPOINT_COLUMNS = ("endpoint_id", "url", "format", "description", "all_event_types", "event_types", "enabled",
                     "disabled_reason", "secret", "previous_secrets", "created_at", "updated_at")


def write_endpoint(store: Store, tenant_id: str, endpoint: StoredEndpoint, deleted: bool = False) -> None:
    row = {
        "tenant_id": tenant_id, "endpoint_id": endpoint.id, "url": endpoint.url, "format": endpoint.format,
        "description": endpoint.description, "all_event_types": int(endpoint.event_types is None),
        "event_types": list(endpoint.event_types or []), "enabled": int(endpoint.enabled),
        "disabled_reason": endpoint.disabled_reason, "secret": endpoint.secret,
        "previous_secrets": json.dumps([p.model_dump(mode="json") for p in endpoint.previous_secrets]),
        "created_at": _ts(endpoint.created_at), "updated_at": _ts(endpoint.updated_at),
        "deleted": int(deleted), "version": time.time_ns(),
    }
    store.insert_rows(f"{store.database}.webhook_endpoints", [row])


def _endpoint(row: dict[str, Any]) -> StoredEndpoint:
    return StoredEndpoint(
        id=row["endpoint_id"], url=row["url"], format=row["format"], description=row["description"],
        event_types=None if row["all_event_types"] else list(row["event_types"]), enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"], secret=row["secret"],
        previous_secrets=[PreviousSecret.model_validate(p) for p in json.loads(row["previous_secrets"] or "[]")],
        created_at=_utc(row["created_at"]), updated_at=_utc(row["updated_at"]),
    )


def read_endpoints(store: Store, tenant_id: str, endpoint_id: str | None = None) -> list[StoredEndpoint]:
    """The tenant's endpoints (or the one asked for), oldest first; removed ones are gone."""
    where, params = "", {"tenant": tenant_id}
    if endpoint_id is not None:
        where, params["id"] = " AND endpoint_id = {id:String}", endpoint_id
    rows = store.query(
        f"""SELECT {", ".join(_ENDPOINT_COLUMNS)} FROM {store.database}.webhook_endpoints FINAL
            WHERE tenant_id = {{tenant:String}}{where} AND deleted = 0 ORDER BY created_at, endpoint_id""",
        params,
    ).to_dicts()
    return [_endpoint(r) for r in rows]


def endpoints_by_id(store: Store, keys: set[tuple[str, str]]) -> dict[tuple[str, str], StoredEndpoint]:
    """Live endpoints by (tenant, endpoint id), of any tenants: what the delivery loop needs."""
    if not keys:
        return {}
    rows = store.query(
        f"""SELECT tenant_id, {", ".join(_ENDPOINT_COLUMNS)} FROM {store.database}.webhook_endpoints FINAL
            WHERE endpoint_id IN {{ids:Array(String)}} AND deleted = 0""",
        {"ids": sorted({e for _, e in keys})},
    ).to_dicts()
    found = {(r["tenant_id"], r["endpoint_id"]): _endpoint(r) for r in rows}
    return {k: v for k, v in found.items() if k in keys}


# --- webhook_deliveries (the outbox) ---


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: an event on its way to one endpoint."""

    tenant_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    event_time: datetime
    event: str  # the event's JSON
    body: str  # what is sent and signed; "" until rendered
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def new(cls, tenant_id: str, endpoint_id: str, event: WebhookEvent, now: datetime, body: bytes = b"") -> Delivery:
        return cls(tenant_id, endpoint_id, event.id, event.type, _utc(event.timestamp), event_json(event).decode(),
                   body.decode(), "pending", 0, now, None, "", now, now)

    def key(self) -> tuple[str, str, str]:
        return self.tenant_id, self.endpoint_id, self.event_id

    def advanced(self, **changes: Any) -> Delivery:
        return replace(self, **changes)

    def _row(self, version: int) -> dict[str, Any]:
        row = asdict(self)
        for column in ("event_time", "next_attempt_at", "created_at", "updated_at"):
            row[column] = _ts(row[column])
        return {**row, "version": version}


def insert_new_deliveries(store: Store, deliveries: list[Delivery]) -> None:
    """New rows at version 0: never above a row already attempted with the same key. They are due
    at once, so a delivery loop in this process is woken (llmscope/wakeups.py)."""
    if deliveries:
        store.insert_rows(f"{store.database}.webhook_deliveries", [d._row(0) for d in deliveries])
        notify(WEBHOOK_OUTBOX)


def write_delivery(store: Store, delivery: Delivery) -> None:
    """The row's new state after an attempt (or a decision not to attempt); the newest write wins."""
    store.insert_rows(f"{store.database}.webhook_deliveries", [delivery._row(time.time_ns())])


def existing_deliveries(store: Store, tenant_id: str, event_id: str, endpoint_ids: list[str]) -> set[str]:
    """Which of these endpoints already have a row for the event (in any state)."""
    if not endpoint_ids:
        return set()
    rows = store.query(
        f"""SELECT DISTINCT endpoint_id FROM {store.database}.webhook_deliveries
            WHERE tenant_id = {{tenant:String}} AND endpoint_id IN {{ids:Array(String)}} AND event_id = {{event:String}}""",
        {"tenant": tenant_id, "ids": endpoint_ids, "event": event_id},
    )
    return {r["endpoint_id"] for r in rows.to_dicts()}


_DELIVERY_COLUMNS = ", ".join(Delivery.__dataclass_fields__)


def _delivery(row: dict[str, Any]) -> Delivery:
    for column in ("event_time", "next_attempt_at", "created_at", "updated_at"):
        row[column] = _utc(row[column])
    return Delivery(**{k: row[k] for k in Delivery.__dataclass_fields__})


def due_deliveries(store: Store, now: datetime, per_endpoint: int, limit: int) -> list[Delivery]:
    """Pending rows whose next attempt is due, earliest first, at most `per_endpoint` per endpoint."""
    rows = store.query(
        f"""SELECT {_DELIVERY_COLUMNS} FROM {store.database}.webhook_deliveries FINAL
            WHERE status = 'pending' AND next_attempt_at <= {{now:DateTime64(3, 'UTC')}}
            ORDER BY next_attempt_at, event_id
            LIMIT {{per:UInt32}} BY tenant_id, endpoint_id
            LIMIT {{limit:UInt32}}""",
        {"now": _param(now), "per": per_endpoint, "limit": limit},
    ).to_dicts()
    return [_delivery(r) for r in rows]


def read_deliveries(store: Store, tenant_id: str, endpoint_id: str, limit: int,
                    before: tuple[datetime, str] | None = None) -> list[Delivery]:
    """One endpoint's deliveries, newest event first; `before` = (event_time, event_id) of the last
    one already seen."""
    params: dict[str, Any] = {"tenant": tenant_id, "id": endpoint_id, "limit": limit}
    after = ""
    if before is not None:
        after = "AND (event_time, event_id) < ({c_time:DateTime64(3, 'UTC')}, {c_id:String})"
        params["c_time"], params["c_id"] = _param(before[0]), before[1]
    rows = store.query(
        f"""SELECT {_DELIVERY_COLUMNS} FROM {store.database}.webhook_deliveries FINAL
            WHERE tenant_id = {{tenant:String}} AND endpoint_id = {{id:String}} {after}
            ORDER BY event_time DESC, event_id DESC LIMIT {{limit:UInt32}}""",
        params,
    ).to_dicts()
    return [_delivery(r) for r in rows]


# --- webhook_attempts ---


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    attempted_at: datetime
    result: str  # delivered, retry, gone, failed
    status_code: int | None
    error: str
    duration_ms: float
    next_attempt_at: datetime | None
    response_excerpt: str


def record_attempt(store: Store, delivery: Delivery, attempt: Attempt) -> None:
    row = {
        "tenant_id": delivery.tenant_id, "endpoint_id": delivery.endpoint_id, "event_id": delivery.event_id,
        "event_type": delivery.event_type, **asdict(attempt), "attempted_at": _ts(attempt.attempted_at),
        "next_attempt_at": None if attempt.next_attempt_at is None else _ts(attempt.next_attempt_at),
    }
    store.insert_rows(f"{store.database}.webhook_attempts", [row])


def read_attempts(store: Store, tenant_id: str, endpoint_id: str, event_ids: list[str]) -> dict[str, list[Attempt]]:
    """The attempts at these events' deliveries to one endpoint, by event, in order."""
    if not event_ids:
        return {}
    rows = store.query(
        f"""SELECT event_id, {", ".join(Attempt.__dataclass_fields__)} FROM {store.database}.webhook_attempts
            WHERE tenant_id = {{tenant:String}} AND endpoint_id = {{id:String}} AND event_id IN {{events:Array(String)}}
            ORDER BY attempted_at, attempt""",
        {"tenant": tenant_id, "id": endpoint_id, "events": event_ids},
    ).to_dicts()
    found: dict[str, list[Attempt]] = {}
    for r in rows:
        event = r.pop("event_id")
        r["attempted_at"] = _utc(r["attempted_at"])
        r["next_attempt_at"] = None if r["next_attempt_at"] is None else _utc(r["next_attempt_at"])
        found.setdefault(event, []).append(Attempt(**r))
    return found
