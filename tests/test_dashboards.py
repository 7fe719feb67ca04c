"""The provisioned Grafana dashboards: committed JSON matches its builder, and every panel's SQL
runs on the real engine with the ClickHouse datasource's macros expanded as the plugin does."""

from __future__ import annotations

import json
import re

import pytest

from dashboards.build import DASHBOARDS, DATASOURCE, OUT, render
from llmscope.storage import Store


def _expand(sql: str, start: int, end: int) -> str:
    """The plugin's macros (grafana/clickhouse-datasource docs): second precision, as Grafana sends."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= toDateTime({start}) AND \1 <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)", sql)
    return sql.replace("${tenant:singlequote}", "'tenant-a','tenant-b'")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_dashboard_matches_its_builder(name: str) -> None:
    assert (OUT / name).read_text() == render(DASHBOARDS[name]), "run: python -m dashboards.build"


def _panels() -> list[tuple[str, dict]]:
    return [(name, p) for name in sorted(DASHBOARDS) for p in json.loads((OUT / name).read_text())["panels"]]


@pytest.mark.parametrize(("name", "panel"), _panels(), ids=lambda v: v if isinstance(v, str) else v["title"])
def test_every_panel_query_runs_on_the_engine(name: str, panel: dict, store: Store) -> None:
    assert panel["datasource"] == DATASOURCE
    for target in panel["targets"]:
        sql = _expand(target["rawSql"], 1_700_000_000, 2_000_000_000)
        assert "$__" not in sql and "${" not in sql
        store.query(sql)  # raises on any SQL error


def test_dashboards_use_the_provisioned_datasource_and_fixed_uids() -> None:
    datasource_yaml = (OUT.parent / "provisioning/datasources/clickhouse.yaml").read_text()
    for name in DASHBOARDS:
        board = json.loads((OUT / name).read_text())
        assert board["uid"] and board["uid"] in name
        assert f"uid: {DATASOURCE['uid']}" in datasource_yaml
