"""The anomalies table's contract (migration 0007): its name, the metrics and statuses it holds, and
how a row's `version` orders the versions of one episode. The worker's anomaly agent writes it
(streams/agents/anomalies.py); the query API reads it (query/anomalies.py).

One row per episode of one metric of one series, rewritten as the episode changes; queries read
`FINAL`, so the newest version wins. The version is the judged minute times 4 plus the rank of the
change, so a later minute always wins and, within one minute, a close outranks an update, which
outranks the opening.
"""

from __future__ import annotations

from typing import Literal

ANOMALIES = "anomalies"

# The detector's metric names (streams/stages/anomaly/series.py METRICS; a test keeps them equal).
METRIC_NAMES = ("requests", "error_rate", "latency_p95_ms", "cost_usd", "tokens_per_request")
AnomalyMetric = Literal["requests", "error_rate", "latency_p95_ms", "cost_usd", "tokens_per_request"]
AnomalyStatus = Literal["open", "closed"]

_RANK = {"opened": 1, "updated": 2, "closed": 3}


def row_version(minute: int, kind: str) -> int:
    """The version of the row an episode change writes: `minute` is the judged epoch minute,
    `kind` opened, updated or closed."""
    return minute * 4 + _RANK[kind]


def row_status(kind: str) -> AnomalyStatus:
    return "closed" if kind == "closed" else "open"
