"""The query API's /metrics: parses as Prometheus text; request latency per route template and
analytics cache hits and misses move as requests are answered."""

from __future__ import annotations

import uuid

from tests.prometheus import value


async def test_request_latency_per_route_and_cache_hits_move(api, tenant_keys) -> None:
    before = (await api.get("/metrics")).text
    auth = {"authorization": f"Bearer {tenant_keys['a']}"}
    past = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z", "model": uuid.uuid4().hex}
    first = await api.get("/api/v1/metrics/summary", params=past, headers=auth)
    second = await api.get("/api/v1/metrics/summary", params=past, headers=auth)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    missing = await api.get(f"/api/v1/traces/{'ab' * 16}", headers=auth)
    assert missing.status_code == 404
    after = (await api.get("/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("llmscope_query_cache_requests_total", result="miss") == 1
    assert moved("llmscope_query_cache_requests_total", result="hit") == 1
    summary = {"app": "query", "method": "GET", "route": "/api/v1/metrics/summary", "status": "200"}
    assert moved("llmscope_http_request_duration_seconds_count", **summary) == 2
    # The route template, never the id in the path: labels stay bounded.
    trace = {"app": "query", "route": "/api/v1/traces/{trace_id}", "status": "404"}
    assert moved("llmscope_http_request_duration_seconds_count", **trace) == 1
    assert "ab" * 16 not in after
