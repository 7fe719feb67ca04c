"""What the anomaly agent reads and writes in the store: minute points from the rollups, the series
worth watching, and the anomalies table (episodes). Blocking calls: the agent runs them on a thread.

Points are read from `rollup_minute FINAL`, over model calls only (schemas/operations.py: what the
analytics count as requests, so an agent turn wrapping its calls is neither a request nor a
latency), summed per (tenant, service, provider, model) and minute in SQL (the histograms merged
with sumMap), then folded by the detector's own `points_from_rollup_rows`, so the timer's points and
a warm-up's history are the same numbers, and latency p95 is the query API's
(`quantile_from_histogram`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from llmscope.storage import Store
from schemas.anomalies import ANOMALIES, row_status, row_version
from schemas.operations import model_call_sql
from schemas.rollup import ROLLUP_MINUTE, quantile_from_histogram
from streams.stages.anomaly import AnomalyEvent, MinutePoint, SeriesKey, points_from_rollup_rows

_FMT = "%Y-%m-%d %H:%M:%S"
_MODEL_CALLS = model_call_sql()
_SUMS = """sum(requests) AS requests, sum(errors) AS errors, sum(input_tokens) AS input_tokens,
           sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, sumMap(latency_hist) AS latency_hist"""


def _time(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, timezone.utc).strftime(_FMT)


def _p95(hist: Mapping[int, int]) -> float | None:
    return quantile_from_histogram(hist, 0.95)


def _hist(value: Any) -> dict[int, int]:
    """A Map column as Arrow hands it over: (key, value) pairs or {"key", "value"} structs."""
    if isinstance(value, Mapping):
        return {int(k): int(v) for k, v in value.items()}
    out: dict[int, int] = {}
    for item in value or ():
        k, v = (item["key"], item["value"]) if isinstance(item, Mapping) else item
        out[int(k)] = int(v)
    return out


def _points(store: Store, sql: str, params: Mapping[str, Any]) -> dict[int, dict[SeriesKey, MinutePoint]]:
    rows = store.query_arrow(sql, params).to_pylist()
    for row in rows:
        row["minute"] = float(row.pop("minute_s"))
        row["latency_hist"] = _hist(row["latency_hist"])
    return points_from_rollup_rows(rows, _p95)


def minute_points(store: Store, first: int, last: int) -> dict[int, dict[SeriesKey, MinutePoint]]:
    """Every series' point (the tenants overall included) of each epoch minute in [first, last]."""
    sql = f"""
        SELECT tenant_id, toUnixTimestamp(minute) AS minute_s, service_name, provider, model, {_SUMS}
        FROM {store.database}.{ROLLUP_MINUTE} FINAL
        WHERE minute >= {{lo:DateTime('UTC')}} AND minute <= {{hi:DateTime('UTC')}} AND {_MODEL_CALLS}
        GROUP BY tenant_id, minute, service_name, provider, model"""
    return _points(store, sql, {"lo": _time(first), "hi": _time(last)})


def series_points(store: Store, key: SeriesKey, first: int, last: int) -> dict[int, MinutePoint]:
    """One series' points of the epoch minutes in [first, last] that have data (a warm-up's history)."""
    params: dict[str, Any] = {"tenant": key.tenant, "lo": _time(first), "hi": _time(last)}
    if key.is_overall:  # the whole tenant in one row a minute, under a placeholder fine key
        labels, where = "'' AS service_name, '' AS provider, '' AS model", ""
        group = "tenant_id, minute"
    else:
        labels = "service_name, provider, model"
        where = "AND service_name = {service:String} AND provider = {provider:String} AND model = {model:String}"
        group = "tenant_id, minute, service_name, provider, model"
        params.update(service=key.service, provider=key.provider, model=key.model)
    sql = f"""
        SELECT tenant_id, toUnixTimestamp(minute) AS minute_s, {labels}, {_SUMS}
        FROM {store.database}.{ROLLUP_MINUTE} FINAL
        WHERE tenant_id = {{tenant:String}} AND minute >= {{lo:DateTime('UTC')}} AND minute <= {{hi:DateTime('UTC')}}
          AND {_MODEL_CALLS} {where}
        GROUP BY {group}"""
    return {m: by_key[key] for m, by_key in _points(store, sql, params).items() if key in by_key}


def known_series(store: Store, since: int) -> set[SeriesKey]:
    """Every series with rollup rows since epoch minute `since`, and each of their tenants overall.

    Read without FINAL: a group a recomputation replaced may still show up until a merge, and is
    then ticked as silent, which is what it is."""
    sql = f"""
        SELECT DISTINCT tenant_id, service_name, provider, model
        FROM {store.database}.{ROLLUP_MINUTE} WHERE minute >= {{since:DateTime('UTC')}} AND {_MODEL_CALLS}"""
    found: set[SeriesKey] = set()
    for r in store.query_arrow(sql, {"since": _time(since)}).to_pylist():
        found.add(SeriesKey(r["tenant_id"], r["service_name"], r["provider"], r["model"]))
        found.add(SeriesKey.overall(r["tenant_id"]))
    return found


def stored_versions(store: Store, tenant: str, episode_ids: Iterable[str]) -> dict[str, int]:
    """episode id -> the newest version stored, for those of `episode_ids` that have a row."""
    ids = sorted(set(episode_ids))
    if not ids:
        return {}
    sql = f"""
        SELECT episode_id, max(version) AS version FROM {store.database}.{ANOMALIES}
        WHERE tenant_id = {{tenant:String}} AND episode_id IN {{ids:Array(String)}} GROUP BY episode_id"""
    return {r["episode_id"]: int(r["version"]) for r in store.query_arrow(sql, {"tenant": tenant, "ids": ids}).to_pylist()}


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else float(x)


def episode_row(event: AnomalyEvent) -> dict[str, Any]:
    """The anomalies row (a new version of its episode) one detector event writes."""
    key = event.series
    return {
        "tenant_id": key.tenant,
        "episode_id": event.episode_id,
        "is_overall": int(key.is_overall),
        "service_name": key.service or "",
        "provider": key.provider or "",
        "model": key.model or "",
        "metric": event.metric,
        "direction": event.direction,
        "status": row_status(event.kind),
        "started_at": _time(event.start),
        "ended_at": None if event.end is None else _time(event.end),
        "observed": _finite(event.observed),
        "expected": _finite(event.expected),
        "score": _finite(event.score),
        "peak_at": _time(event.peak_minute),
        "peak_score": _finite(event.peak_score) or 0.0,
        "peak_observed": _finite(event.peak_observed) or 0.0,
        "peak_expected": _finite(event.peak_expected) or 0.0,
        "version": row_version(event.minute, event.kind),
    }


def insert_episodes(store: Store, rows: list[dict[str, Any]]) -> None:
    """Insert `episode_row`s: new versions of their episodes."""
    store.insert_rows(f"{store.database}.{ANOMALIES}", rows)
