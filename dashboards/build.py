"""Grafana dashboards as code: `python -m dashboards.build` writes dashboards/json/*.json.

Plain classic dashboard JSON (loads through file provisioning in Grafana 9-13) rather than a
builder library: grafana-foundation-sdk needs an exact epoch!version pin per Grafana release and
grafanalib is unmaintained, while the JSON model is small and stable. Panels query ClickHouse
through the official datasource (uid below) and reuse the rollup SQL of schemas/rollup.py, so
Grafana and the query API compute the same percentiles, and count what the API counts: model calls
(schemas/operations.py), not the agent and tool spans around them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.operations import model_call_sql
from schemas.rollup import quantile_sql

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "llmscope-clickhouse"}
OUT = Path(__file__).resolve().parent / "json"
MINUTES = "llmscope.rollup_minute FINAL"
SPANS = "llmscope.spans FINAL"
TENANT = "tenant_id IN (${tenant:singlequote})"
MODEL_CALLS = model_call_sql()
COST = "toFloat64(sum(toDecimal256(cost_usd, 12)))"  # a Decimal(38, 12) sum would wrap (schemas/rollup.py)


def _target(sql: str, fmt: int) -> dict[str, Any]:
    # format: 0 = time series, 1 = table (the plugin's enum)
    return {"refId": "A", "datasource": DATASOURCE, "editorType": "sql", "format": fmt, "rawSql": " ".join(sql.split())}


def _panel(pid: int, title: str, kind: str, sql: str, pos: tuple[int, int, int, int], unit: str = "short") -> dict[str, Any]:
    x, y, w, h = pos
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [_target(sql, 1 if kind in ("table", "stat", "bargauge") else 0)],
    }


def overview() -> dict[str, Any]:
    per_minute = f"FROM {MINUTES} WHERE {TENANT} AND $__timeFilter(minute) AND {MODEL_CALLS}"
    p95 = quantile_sql("sumMap(latency_hist)", 0.95)
    panels = [
        _panel(1, "Requests (model calls)", "stat", f"SELECT sum(requests) AS requests {per_minute}", (0, 0, 6, 4)),
        _panel(2, "Error rate", "stat", f"SELECT sum(errors) / greatest(sum(requests), 1) AS error_rate {per_minute}", (6, 0, 6, 4), "percentunit"),
        _panel(3, "Cost", "stat", f"SELECT {COST} AS cost_usd {per_minute}", (12, 0, 6, 4), "currencyUSD"),
        _panel(4, "Latency p95", "stat", f"SELECT {p95} AS p95_ms {per_minute}", (18, 0, 6, 4), "ms"),
        _panel(
            5, "Requests and errors per interval", "timeseries",
            f"SELECT $__timeInterval(minute) AS time, sum(requests) AS requests, sum(errors) AS errors {per_minute} "
            "GROUP BY time ORDER BY time",
            (0, 4, 12, 8),
        ),
        _panel(
            6, "Cost by model", "timeseries",
            f"SELECT $__timeInterval(minute) AS time, model, {COST} AS cost_usd {per_minute} "
            "GROUP BY time, model ORDER BY time",
            (12, 4, 12, 8), "currencyUSD",
        ),
        _panel(
            7, "Latency p95 by model", "timeseries",
            f"SELECT $__timeInterval(minute) AS time, model, {p95} AS p95_ms {per_minute} GROUP BY time, model ORDER BY time",
            (0, 12, 12, 8), "ms",
        ),
        _panel(
            8, "Tokens", "timeseries",
            f"SELECT $__timeInterval(minute) AS time, sum(input_tokens) AS input, sum(output_tokens) AS output, "
            f"sum(cached_input_tokens) AS cached_input, sum(reasoning_tokens) AS reasoning {per_minute} "
            "GROUP BY time ORDER BY time",
            (12, 12, 12, 8),
        ),
        _panel(
            9, "Top users by cost", "table",
            f"SELECT user_id, count() AS requests, {COST} AS cost_usd FROM {SPANS} "
            f"WHERE {TENANT} AND $__timeFilter(start_time) AND {MODEL_CALLS} AND user_id != '' GROUP BY user_id ORDER BY cost_usd DESC LIMIT 20",
            (0, 20, 12, 8),
        ),
        _panel(
            10, "Recent errors", "table",
            f"SELECT start_time, service_name, model, name, status_message, trace_id FROM {SPANS} "
            f"WHERE {TENANT} AND $__timeFilter(start_time) AND status_code = 'error' ORDER BY start_time DESC LIMIT 50",
            (12, 20, 12, 8),
        ),
        _panel(
            11, "PII findings by kind", "bargauge",
            f"SELECT kind, sum(n) AS findings FROM (SELECT arrayJoin(mapKeys(pii_counts)) AS kind, pii_counts[kind] AS n "
            f"FROM {SPANS} WHERE {TENANT} AND $__timeFilter(start_time)) GROUP BY kind ORDER BY findings DESC",
            (0, 28, 12, 7),
        ),
        _panel(
            12, "Models without a known price", "table",
            f"SELECT provider, model, count() AS spans FROM {SPANS} WHERE {TENANT} AND $__timeFilter(start_time) "
            "AND cost_usd IS NULL AND model != '' AND usage_reported = 1 GROUP BY provider, model ORDER BY spans DESC",
            (12, 28, 12, 7),
        ),
    ]
    tenant_variable = {
        "name": "tenant",
        "label": "Tenant",
        "type": "query",
        "datasource": DATASOURCE,
        "query": "SELECT tenant_id FROM llmscope.tenants FINAL ORDER BY tenant_id",
        "definition": "SELECT tenant_id FROM llmscope.tenants FINAL ORDER BY tenant_id",
        "refresh": 1,
        "multi": True,
        "includeAll": True,
    }
    return {
        "uid": "llmscope-overview",
        "title": "LLMScope overview",
        "tags": ["llmscope"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [tenant_variable]},
        "panels": panels,
    }


DASHBOARDS = {"llmscope-overview.json": overview}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))


if __name__ == "__main__":
    main()
