"""Grafana dashboards as code: `python -m dashboards.build` writes dashboards/json/*.json.

Plain classic dashboard JSON (loads through file provisioning in Grafana 9-13) rather than a
builder library: grafana-foundation-sdk needs an exact epoch!version pin per Grafana release and
grafanalib is unmaintained, while the JSON model is small and stable. The LLM dashboards query
ClickHouse through the official datasource (uid below) and reuse the rollup SQL of
schemas/rollup.py, so Grafana and the query API compute the same percentiles, and count what the
API counts: model calls (schemas/operations.py), not the agent and tool spans around them. The
pipeline's own health comes from Prometheus, which scrapes every role's /metrics
(llmscope/metrics.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.operations import model_call_sql
from schemas.rollup import quantile_sql

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "llmscope-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "llmscope-prometheus"}
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


def _prom_panel(
    pid: int, title: str, kind: str, exprs: dict[str, str], pos: tuple[int, int, int, int], unit: str = "short"
) -> dict[str, Any]:
    """A panel of PromQL queries: legend -> expression."""
    x, y, w, h = pos
    targets = [
        {"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}
        for i, (legend, expr) in enumerate(exprs.items())
    ]
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "datasource": PROMETHEUS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": targets,
    }


def _rate(metric: str, by: str = "", where: str = "") -> str:
    selector = f"{metric}{{{where}}}" if where else metric
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({selector}[$__rate_interval]))"


def _p95(histogram: str, by: str, where: str = "") -> str:
    return f"histogram_quantile(0.95, {_rate(histogram + '_bucket', 'le, ' + by if by else 'le', where)})"


def pipeline() -> dict[str, Any]:
    """The pipeline's own health: what came in, how fast it was stored, what is waiting or failing."""
    cache = "llmscope_query_cache_requests_total"
    panels = [
        _prom_panel(1, "Roles up", "stat", {"{{job}} {{instance}}": 'up{job=~"llmscope-.*"}'}, (0, 0, 8, 4)),
        _prom_panel(2, "Consumer lag (messages)", "stat", {"lag": "sum(max by (topic, partition) (llmscope_consumer_lag_messages))"}, (8, 0, 8, 4)),
        _prom_panel(3, "Store writes failing now", "stat", {"failing": "sum(llmscope_sink_failing_writes)"}, (16, 0, 8, 4)),
        _prom_panel(
            4, "Spans accepted and rejected per second", "timeseries",
            {
                "accepted {{format}}": _rate("llmscope_spans_accepted_total", "format"),
                "rejected {{reason}}": _rate("llmscope_spans_rejected_total", "reason"),
            },
            (0, 4, 12, 8), "ops",
        ),
        _prom_panel(
            5, "HTTP requests per second by status", "timeseries",
            {"{{app}} {{status}}": _rate("llmscope_http_request_duration_seconds_count", "app, status")},
            (12, 4, 12, 8), "reqps",
        ),
        _prom_panel(
            6, "HTTP latency p95 by route", "timeseries",
            {"{{app}} {{method}} {{route}}": _p95("llmscope_http_request_duration_seconds", "app, method, route")},
            (0, 12, 12, 8), "s",
        ),
        _prom_panel(
            7, "Kafka produce latency p95 and failures", "timeseries",
            {
                "p95": _p95("llmscope_kafka_produce_duration_seconds", "", 'outcome="ok"'),
                "failed per second": _rate("llmscope_kafka_produce_duration_seconds_count", "", 'outcome="failed"'),
            },
            (12, 12, 12, 8), "s",
        ),
        _prom_panel(
            8, "Consumer lag per partition", "timeseries",
            {"{{topic}} {{partition}}": "max by (topic, partition) (llmscope_consumer_lag_messages)"},
            (0, 20, 12, 8),
        ),
        _prom_panel(
            9, "Rows stored per second by table", "timeseries",
            {"{{table}}": _rate("llmscope_sink_batch_rows_sum", "table")},
            (12, 20, 12, 8), "ops",
        ),
        _prom_panel(
            10, "Store insert latency p95 (retries included)", "timeseries",
            {"{{table}}": _p95("llmscope_sink_write_duration_seconds", "table")},
            (0, 28, 12, 8), "s",
        ),
        _prom_panel(
            11, "Store retries and dead letters per second", "timeseries",
            {
                "retries {{table}}": _rate("llmscope_store_retries_total", "table"),
                "dead letters {{kind}}": _rate("llmscope_dead_letters_total", "kind"),
            },
            (12, 28, 12, 8), "ops",
        ),
        _prom_panel(
            12, "Rate-limit decisions per second", "timeseries",
            {"{{decision}}": _rate("llmscope_rate_limit_decisions_total", "decision")},
            (0, 36, 8, 8), "ops",
        ),
        _prom_panel(
            13, "Query cache hit ratio", "timeseries",
            {
                "hit ratio": _rate(cache, "", 'result="hit"') + " / " + _rate(cache, "", 'result=~"hit|miss"'),
                "errors per second": _rate(cache, "", 'result="error"'),
            },
            (8, 36, 8, 8), "percentunit",
        ),
        _prom_panel(
            14, "Webhook deliveries per second by outcome", "timeseries",
            {"{{outcome}}": _rate("llmscope_webhook_deliveries_total", "outcome")},
            (16, 36, 8, 8), "ops",
        ),
    ]
    return {
        "uid": "llmscope-pipeline",
        "title": "LLMScope pipeline health",
        "tags": ["llmscope"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": []},
        "panels": panels,
    }


DASHBOARDS = {"llmscope-overview.json": overview, "llmscope-pipeline.json": pipeline}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (OUT / name).write_text(render(build))


if __name__ == "__main__":
    main()
