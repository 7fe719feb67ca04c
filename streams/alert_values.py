"""What an alert rule sees at a tick: its values per group, read from the store, in the analytics
API's units (streams/alerting.py says what each kind expects).

- threshold: the metric over [now - window, now) per group, from `rollup_minute FINAL`, or from
  `spans FINAL` when a filter or the grouping is not in the rollup key (user, session). As in the
  analytics API, only model calls count unless the rule filters on an operation (`*`: every span). The whole
  window is re-read on every tick, so a span that arrived late counts at the next tick covering it.
  Latency percentiles merge the minute histograms exactly as the analytics API does
  (schemas/rollup.py).
- anomaly: the peak score of each matching series' open episode (the `anomalies` table).
- absence: seconds since the last span of each series that sent spans in the last WATCH_SECONDS.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from llmscope.storage import Store
from schemas.alerts import AbsenceCondition, AlertRule, AnomalyCondition, ThresholdCondition
from schemas.operations import ALL_OPERATIONS, model_call_sql
from schemas.rollup import COUNTERS, quantile_sql, span_aggregates_sql, sum_sql
from streams.alerting import group_label

# The rules' dimension and filter names -> spans/rollup columns (the analytics API's names).
DIMENSION_COLUMNS = {"service": "service_name", "provider": "provider", "model": "model", "operation": "operation",
                     "prompt": "prompt_name", "user": "user_id", "session": "session_id"}
FILTER_COLUMNS = {"service": "service_name", "provider": "provider", "model": "model", "operation": "operation",
                  "status": "status_code", "user_id": "user_id", "session_id": "session_id",
                  "prompt_name": "prompt_name"}
RAW_ONLY_COLUMNS = {"user_id", "session_id"}  # not in the rollup key: answered from the spans
QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
WATCH_SECONDS = 7 * 86_400  # absence rules watch the series that sent spans within this
_FMT = "%Y-%m-%d %H:%M:%S"

Values = dict[str, float | None]


def read_values(store: Store, tenant_id: str, rule: AlertRule, now: datetime) -> Values:
    c = rule.condition
    if isinstance(c, ThresholdCondition):
        return threshold_values(store, tenant_id, c, now)
    if isinstance(c, AnomalyCondition):
        return anomaly_values(store, tenant_id, c)
    assert isinstance(c, AbsenceCondition)
    return absence_values(store, tenant_id, c, now)


def _where(filters: Mapping[str, str], params: dict[str, Any]) -> str:
    out = ""
    for i, (column, value) in enumerate(filters.items()):
        out += f" AND {column} = {{f{i}:String}}"
        params[f"f{i}"] = value
    return out


def threshold_values(store: Store, tenant_id: str, c: ThresholdCondition, now: datetime) -> Values:
    given = c.filters.given()
    filters = {FILTER_COLUMNS[k]: v for k, v in given.items() if not (k == "operation" and v == ALL_OPERATIONS)}
    group = DIMENSION_COLUMNS[c.group_by] if c.group_by else None
    start = now - timedelta(seconds=c.window_seconds)
    params: dict[str, Any] = {"t": tenant_id, "lo": start.strftime(_FMT), "hi": now.strftime(_FMT)}
    where = _where(filters, params) + ("" if "operation" in given else f" AND {model_call_sql()}")
    latency = c.metric in QUANTILES
    if group in RAW_ONLY_COLUMNS or RAW_ONLY_COLUMNS & filters.keys():
        inner = f"""SELECT {group or "''"} AS g, {span_aggregates_sql("s", latency)}
            FROM {store.database}.spans AS s FINAL
            WHERE tenant_id = {{t:String}} AND start_time >= {{lo:DateTime64(9, 'UTC')}}
              AND start_time < {{hi:DateTime64(9, 'UTC')}}{where}
            GROUP BY g"""
    else:
        sums = ", ".join(sum_sql(col) for col in (*COUNTERS, "cost_usd"))
        inner = f"""SELECT {group or "''"} AS g, {sums}, {"sumMap(latency_hist)" if latency else "0"} AS latency_hist
            FROM {store.database}.rollup_minute FINAL
            WHERE tenant_id = {{t:String}} AND minute >= {{lo:DateTime('UTC')}} AND minute < {{hi:DateTime('UTC')}}{where}
            GROUP BY g"""
    value = quantile_sql("sumMap(latency_hist)", QUANTILES[c.metric]) if latency else "0"
    rows = store.query(
        f"""SELECT toString(g) AS g, sum(requests) AS requests, sum(errors) AS errors,
                   {sum_sql("input_tokens")}, {sum_sql("output_tokens")},
                   toFloat64(sum(cost_usd)) AS cost_usd, sum(cost_known) AS cost_known, {value} AS latency
            FROM ({inner}) GROUP BY g""",
        params,
    ).to_dicts()
    values = {r["g"]: metric_value(c.metric, r) for r in rows if r["requests"]}
    if group is None and "" not in values:
        values[""] = metric_value(c.metric, {"requests": 0})  # no spans: counters are 0, rates undefined
    return values


def metric_value(metric: str, row: Mapping[str, Any]) -> float | None:
    """One metric of a group's window sums, as the analytics API reports it (None: undefined)."""
    requests = int(row["requests"])
    if metric == "requests":
        return float(requests)
    if metric == "error_rate":
        return row["errors"] / requests if requests else None
    if metric in QUANTILES:
        return row["latency"] if requests else None
    if metric == "cost_usd":  # unknown cost is no data, not $0 (as in the analytics API)
        return None if requests and not row["cost_known"] else float(row.get("cost_usd") or 0.0)
    if metric == "tokens":
        return float(row["input_tokens"] + row["output_tokens"]) if requests else 0.0
    return float(row[metric]) if requests else 0.0  # errors, input_tokens, output_tokens


def anomaly_values(store: Store, tenant_id: str, c: AnomalyCondition) -> Values:
    filters = {col: v for col, v in (("service_name", c.service), ("provider", c.provider), ("model", c.model),
                                     ("metric", c.metric)) if v is not None}
    params: dict[str, Any] = {"t": tenant_id}
    rows = store.query(
        f"""SELECT is_overall, service_name, provider, model, metric, max(peak_score) AS peak
            FROM {store.database}.anomalies FINAL
            WHERE tenant_id = {{t:String}} AND status = 'open'{_where(filters, params)}
            GROUP BY is_overall, service_name, provider, model, metric""",
        params,
    ).to_dicts()
    out: Values = {}
    for r in rows:
        labels = ({} if r["is_overall"] else
                  {"service": r["service_name"] or None, "provider": r["provider"] or None, "model": r["model"] or None})
        out[group_label(**labels, metric=r["metric"])] = float(r["peak"])
    return out


def absence_values(store: Store, tenant_id: str, c: AbsenceCondition, now: datetime) -> Values:
    filters = {col: v for col, v in (("service_name", c.service), ("provider", c.provider), ("model", c.model))
               if v is not None}
    group = DIMENSION_COLUMNS[c.group_by] if c.group_by else "''"
    params: dict[str, Any] = {"t": tenant_id, "lo": (now - timedelta(seconds=WATCH_SECONDS)).strftime(_FMT),
                              "hi": now.strftime(_FMT)}
    # A minute row says a span started within that minute: its end is the latest the span can have been.
    rows = store.query(
        f"""SELECT toString({group}) AS g, toUnixTimestamp(max(minute)) + 60 AS last
            FROM {store.database}.rollup_minute FINAL
            WHERE tenant_id = {{t:String}} AND minute >= {{lo:DateTime('UTC')}} AND minute < {{hi:DateTime('UTC')}}
              AND requests > 0{_where(filters, params)}
            GROUP BY g""",
        params,
    ).to_dicts()
    t = int(now.timestamp())
    return {r["g"]: float(max(0, t - int(r["last"]))) for r in rows}
