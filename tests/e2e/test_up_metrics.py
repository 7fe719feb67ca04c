"""`llmscope up` serves every role's metrics (one process, one registry) on its ingest and query
ports, and they move when spans flow through it."""

from __future__ import annotations

import httpx

from tests.conftest import UpProcess, wait_for
from tests.otlp_factory import llm_span, request_of
from tests.prometheus import samples, value


def _metrics(base: str) -> str:
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200
    return r.text


def test_up_serves_ingest_worker_and_query_metrics_that_move(up: UpProcess) -> None:
    before = _metrics(up.query_url)
    body = request_of([llm_span() for _ in range(3)]).SerializeToString()
    r = httpx.post(f"{up.ingest_url}/v1/traces", content=body,
                   headers={**up.auth(), "content-type": "application/x-protobuf"})
    assert r.status_code == 200

    def stored() -> str | None:
        text = _metrics(up.query_url)
        moved = value(text, "llmscope_sink_batch_rows_sum", table="spans") - value(before, "llmscope_sink_batch_rows_sum", table="spans")
        return text if moved >= 3 else None

    text = wait_for(stored, timeout=60)
    assert value(text, "llmscope_spans_accepted_total") - value(before, "llmscope_spans_accepted_total") >= 3
    wait_for(lambda: any(name == "llmscope_consumer_lag_messages" for name, _ in samples(_metrics(up.query_url))))
    assert _metrics(up.ingest_url).startswith("# HELP")  # the same registry on the ingest port
