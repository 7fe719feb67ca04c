"""The provisioned Grafana dashboards: committed JSON matches its builder, every panel's SQL runs
on the real engine with the ClickHouse datasource's macros expanded as the plugin does, and every
PromQL panel asks for metrics the roles export."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
import yaml

from dashboards.build import DASHBOARDS, DATASOURCE, OUT, PROMETHEUS, render
from llmscope.storage import Store
from tests.prometheus import exported_names
from tests.schemas.test_rollup import make_span
from tests.streams.test_compaction import store_spans


def _expand(sql: str, start: int, end: int) -> str:
    """The plugin's macros (grafana/clickhouse-datasource docs): second precision, as Grafana sends."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({start}) AND \1 <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)", sql)
    return sql.replace("${tenant:singlequote}", "'tenant-a','tenant-b'")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_dashboard_matches_its_builder(name: str) -> None:
    assert (OUT / name).read_text() == render(DASHBOARDS[name]), "run: python -m dashboards.build"


def _panels(datasource: dict[str, str]) -> list[tuple[str, dict]]:
    return [
        (name, p) for name in sorted(DASHBOARDS) for p in json.loads((OUT / name).read_text())["panels"]
        if p["datasource"] == datasource
    ]


def test_every_panel_uses_a_provisioned_datasource() -> None:
    assert len(_panels(DATASOURCE)) + len(_panels(PROMETHEUS)) == sum(
        len(json.loads((OUT / name).read_text())["panels"]) for name in DASHBOARDS
    )


@pytest.mark.parametrize(("name", "panel"), _panels(DATASOURCE), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_every_panel_query_runs_on_the_engine(name: str, panel: dict, store: Store) -> None:
    for target in panel["targets"]:
        sql = _expand(target["rawSql"], 1_700_000_000, 2_000_000_000)
        assert "$__" not in sql and "${" not in sql
        store.query(sql)  # raises on any SQL error


@pytest.mark.parametrize(("name", "panel"), _panels(PROMETHEUS), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_every_promql_panel_asks_for_exported_metrics_and_scraped_jobs(name: str, panel: dict) -> None:
    exported = exported_names()
    scrape = yaml.safe_load((OUT.parent / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    for target in panel["targets"]:
        expr = target["expr"]
        assert expr.count("(") == expr.count(")"), expr
        used = set(re.findall(r"\bllmscope_[a-z_]+", expr))
        assert used <= exported, used - exported
        if not used:  # Prometheus's own `up` of our scrape jobs
            assert expr == 'up{job=~"llmscope-.*"}' and jobs and all(job.startswith("llmscope-") for job in jobs)


def test_dashboards_use_the_provisioned_datasources_and_fixed_uids() -> None:
    provisioned = {
        ds["uid"]
        for path in (OUT.parent / "provisioning/datasources").glob("*.yaml")
        for ds in yaml.safe_load(path.read_text())["datasources"]
    }
    assert {DATASOURCE["uid"], PROMETHEUS["uid"]} <= provisioned
    for name in DASHBOARDS:
        board = json.loads((OUT / name).read_text())
        assert board["uid"] and board["uid"] in name


def test_requests_panel_counts_model_calls_not_the_agent_spans_around_them(store: Store) -> None:
    start = (int(datetime.now(timezone.utc).timestamp()) // 60 - 120) * 60 * 10**9  # within the retention
    spans = []
    for i in range(4):
        spans.append(make_span("dash-agents", 2 * i, start + i * 60 * 10**9, 10**10, operation="invoke_agent"))
        spans.append(make_span("dash-agents", 2 * i + 1, start + i * 60 * 10**9, 10**9, parent_span_id=f"{2 * i:016x}"))
    store_spans(store, spans)
    panel = next(p for p in json.loads((OUT / "llmscope-overview.json").read_text())["panels"] if p["id"] == 1)
    sql = _expand(panel["targets"][0]["rawSql"], start // 10**9 - 60, start // 10**9 + 3600)
    assert store.query(sql.replace("'tenant-a','tenant-b'", "'dash-agents'"))["requests"][0] == 4
