"""The traces API over the real chDB store: filters, cursor pages, tenant isolation, error shape."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from llmscope.auth import create_key
from llmscope.storage import Store
from streams.stages.normalise import normalise
from tests.otlp_factory import llm_span, request_of

NOW = time.time_ns()
MIN = 60 * 1_000_000_000


@pytest.fixture(scope="session")
async def seeded(store: Store) -> dict[str, list[str]]:
    """tenant traces-a: 7 two-span traces a minute apart; tenant traces-b: one trace."""
    traces: dict[str, list[str]] = {"traces-a": [], "traces-b": []}
    rows = []
    for i in range(7):
        tid = os.urandom(16)
        root = llm_span(
            tid, name="agent.run", provider="agent-framework", model="planner",
            start_ns=NOW - (i + 1) * MIN, duration_ns=2_000_000_000,
        )
        child = llm_span(
            tid, name="chat", parent=root.span_id, model="gpt-4o" if i % 2 else "claude-3-5-sonnet",
            provider="openai" if i % 2 else "anthropic", input_tokens=100 + i, output_tokens=10,
            error=(i == 3), start_ns=NOW - (i + 1) * MIN + 1000, extra={"user.id": f"user-{i % 3}", "session.id": "s-1", **({"gen_ai.prompt.name": "greet"} if i in (2, 5) else {})},
        )
        rows += [s.to_row(NOW) for s in normalise(request_of([root, child], service=f"svc-{i % 2}"), "traces-a")]
        traces["traces-a"].append(tid.hex())
    tid = os.urandom(16)
    rows += [s.to_row(NOW) for s in normalise(request_of([llm_span(tid, start_ns=NOW - MIN)]), "traces-b")]
    traces["traces-b"].append(tid.hex())
    await asyncio.to_thread(store.insert_rows, f"{store.database}.spans", rows, "seed-traces")
    return traces


@pytest.fixture(scope="session")
def keys(store: Store) -> dict[str, dict[str, str]]:
    def h(key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    return {
        "a": h(create_key(store, "traces-a", "reader", {"read"})),
        "b": h(create_key(store, "traces-b", "reader", {"read"})),
        "a_ingest": h(create_key(store, "traces-a", "ingest", {"ingest"})),
    }


async def test_list_returns_newest_first_with_trace_summaries(api, seeded, keys) -> None:
    r = await api.get("/api/v1/traces", headers=keys["a"])
    assert r.status_code == 200
    data = r.json()["data"]
    assert [t["trace_id"] for t in data] == seeded["traces-a"]
    first = data[0]
    assert first["root_span_name"] == "agent.run"
    assert first["span_count"] == 2
    assert first["input_tokens"] == 100 + 100 and first["output_tokens"] == 20 + 10
    assert first["service"] == "svc-0"
    assert first["duration_ms"] == pytest.approx(2000.0, abs=1)
    assert data[3]["status"] == "error" and data[0]["status"] == "ok"
    assert r.json()["next_cursor"] is None


async def test_cursor_pagination_visits_every_trace_once(api, seeded, keys) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = (await api.get("/api/v1/traces", params=params, headers=keys["a"])).json()
        seen += [t["trace_id"] for t in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == seeded["traces-a"]


@pytest.mark.parametrize(
    ("params", "indexes"),
    [
        ({"provider": "openai"}, [1, 3, 5]),
        ({"model": "claude-3-5-sonnet"}, [0, 2, 4, 6]),
        ({"service": "svc-1"}, [1, 3, 5]),
        ({"status": "error"}, [3]),
        ({"user_id": "user-1"}, [1, 4]),
        ({"session_id": "s-1"}, list(range(7))),
        ({"session_id": "nope"}, []),
        ({"prompt_name": "greet"}, [2, 5]),
        ({"prompt_name": "greet", "provider": "openai"}, [5]),
    ],
)
async def test_filters_match_traces_with_any_matching_span(api, seeded, keys, params, indexes) -> None:
    body = (await api.get("/api/v1/traces", params=params, headers=keys["a"])).json()
    assert [t["trace_id"] for t in body["data"]] == [seeded["traces-a"][i] for i in indexes]


async def test_time_range_limits_the_list(api, seeded, keys) -> None:
    start = (NOW - 3 * MIN - MIN // 2) / 1e9
    body = (await api.get("/api/v1/traces", params={"start": start}, headers=keys["a"])).json()
    assert [t["trace_id"] for t in body["data"]] == seeded["traces-a"][:3]


async def test_trace_detail_lists_every_span(api, seeded, keys) -> None:
    tid = seeded["traces-a"][1]
    r = await api.get(f"/api/v1/traces/{tid.upper()}", headers=keys["a"])
    assert r.status_code == 200
    spans = r.json()["data"]["spans"]
    assert [s["name"] for s in spans] == ["agent.run", "chat"]
    root, chat = spans
    assert chat["parent_span_id"] == root["span_id"] and root["parent_span_id"] is None
    assert chat["model"] == "gpt-4o" and chat["provider"] == "openai"
    assert chat["input_tokens"] == 101 and chat["attributes"]["user.id"] == "user-1"
    assert chat["duration_ms"] == pytest.approx(250.0)


async def test_a_tenant_never_sees_another_tenants_traces(api, seeded, keys) -> None:
    body = (await api.get("/api/v1/traces", headers=keys["b"])).json()
    assert [t["trace_id"] for t in body["data"]] == seeded["traces-b"]
    r = await api.get(f"/api/v1/traces/{seeded['traces-a'][0]}", headers=keys["b"])
    assert r.status_code == 404
    r = await api.get(f"/api/v1/traces/{seeded['traces-b'][0]}", headers=keys["a"])
    assert r.status_code == 404


async def test_errors_have_one_shape_with_the_request_id(api, seeded, keys) -> None:
    cases = [
        (await api.get("/api/v1/traces/xyz", headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"cursor": "!!!"}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"start": "2026-01-02", "end": "2026-01-01"}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"limit": 0}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"status": "weird"}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"start": "yesterday"}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"start": "0502-01-01T00:00:00Z"}, headers=keys["a"]), 400, "bad_request"),
        (await api.get("/api/v1/traces", params={"provider": "a\tb\nc"}, headers=keys["a"]), 200, None),
        (await api.get("/api/v1/traces"), 401, "unauthenticated"),
        (await api.get("/api/v1/traces", headers=keys["a_ingest"]), 403, "forbidden"),
        (await api.get(f"/api/v1/traces/{'0' * 32}", headers=keys["a"]), 404, "not_found"),
        (await api.get("/api/v1/nothing-here", headers=keys["a"]), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        if code is None:
            continue
        error = response.json()["error"]
        assert error["code"] == code and error["message"]
        assert error["request_id"] == response.headers["x-request-id"]


async def test_openapi_document_is_served(api) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert "/api/v1/traces" in doc["paths"] and "/api/v1/traces/{trace_id}" in doc["paths"]
