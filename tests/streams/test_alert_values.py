"""What a threshold rule sees counts what the analytics API counts: model calls by default."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from llmscope.storage import Store
from schemas.alerts import RuleFilters, ThresholdCondition
from streams.alert_values import threshold_values
from tests.schemas.test_rollup import make_span
from tests.streams.test_compaction import store_spans

TENANT = "alert-values-agents"


@pytest.fixture(scope="module")
def now(store: Store) -> datetime:
    """4 model calls, each under an agent span; one agent turn failed."""
    start = (time.time_ns() // 60_000_000_000 - 5) * 60_000_000_000
    spans = []
    for i in range(4):
        agent = make_span(TENANT, 2 * i, start + i * 10**9, 10**10, operation="invoke_agent",
                          status_code="error" if i == 0 else "ok", user_id="u")
        spans += [agent, make_span(TENANT, 2 * i + 1, start + i * 10**9, 10**9, parent_span_id=agent.span_id,
                                   user_id="u")]
    store_spans(store, spans)
    return datetime.now(timezone.utc)


@pytest.mark.parametrize(("metric", "filters", "expected"), [
    ("requests", {}, 4.0), ("error_rate", {}, 0.0),
    ("requests", {"operation": "invoke_agent"}, 4.0), ("error_rate", {"operation": "invoke_agent"}, 0.25),
    ("requests", {"operation": "*"}, 8.0), ("requests", {"user_id": "u"}, 4.0),  # the raw path counts alike
])
def test_threshold_values_count_model_calls_unless_an_operation_is_named(
        store: Store, now: datetime, metric: str, filters: dict, expected: float) -> None:
    c = ThresholdCondition(metric=metric, comparison=">", value=0, window="15m", filters=RuleFilters(**filters))
    assert threshold_values(store, TENANT, c, now) == {"": expected}
