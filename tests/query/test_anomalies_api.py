"""The anomalies API over the real chDB store: the newest version of each episode, filters, time
range, cursor pages, tenant isolation, and clear 400s. Rows are written the way the agent writes
them (streams/anomaly_store.episode_row)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from llmscope.auth import create_key
from llmscope.storage import Store
from streams.anomaly_store import episode_row, insert_episodes
from streams.stages.anomaly import AnomalyEvent, SeriesKey

NOW = int(time.time()) // 60  # epoch minute
TENANT_A, TENANT_B = f"anomalies-a-{uuid.uuid4().hex[:6]}", f"anomalies-b-{uuid.uuid4().hex[:6]}"
CHAT = ("chat-api", "openai", "gpt-4o")
BILLING = ("billing", "anthropic", "claude-sonnet-4")


def _event(kind: str, n: int, key: SeriesKey, metric: str, direction: str, minute: int, start: int,
           end: int | None = None, score: float = 6.0) -> AnomalyEvent:
    return AnomalyEvent(kind, f"{n:032x}", key, metric, direction, minute, start, end, 900.0 + n, 300.0, score,
                        start, score, 900.0 + n, 300.0)


def _history() -> list[AnomalyEvent]:
    a_chat, a_billing, a_all = SeriesKey(TENANT_A, *CHAT), SeriesKey(TENANT_A, *BILLING), SeriesKey.overall(TENANT_A)
    return [
        # closed an hour ago: two versions, the close wins
        _event("opened", 1, a_chat, "latency_p95_ms", "up", NOW - 58, NOW - 60),
        _event("closed", 1, a_chat, "latency_p95_ms", "up", NOW - 45, NOW - 60, end=NOW - 50),
        _event("opened", 2, a_all, "requests", "down", NOW - 29, NOW - 30),
        _event("opened", 3, a_billing, "error_rate", "up", NOW - 9, NOW - 10, score=4.0),
        _event("updated", 3, a_billing, "error_rate", "up", NOW - 8, NOW - 10, score=8.0),
        _event("opened", 4, a_chat, "cost_usd", "up", NOW - 3 * 1440 + 2, NOW - 3 * 1440),
        _event("closed", 4, a_chat, "cost_usd", "up", NOW - 3 * 1440 + 9, NOW - 3 * 1440, end=NOW - 3 * 1440 + 5),
        *[_event("opened", 10 + i, a_chat, "tokens_per_request", "up", NOW - 200 - i, NOW - 200 - i) for i in range(4)],
        _event("opened", 99, SeriesKey(TENANT_B, *CHAT), "latency_p95_ms", "up", NOW - 20, NOW - 21),
    ]


@pytest.fixture(scope="session")
async def seeded(store: Store) -> None:
    await asyncio.to_thread(insert_episodes, store, [episode_row(e) for e in _history()])


@pytest.fixture(scope="session")
def keys(store: Store) -> dict[str, dict[str, str]]:
    def h(tenant: str, scopes: set[str]) -> dict[str, str]:
        return {"authorization": f"Bearer {create_key(store, tenant, 'anomalies', scopes)}"}

    return {"a": h(TENANT_A, {"read"}), "b": h(TENANT_B, {"read"}), "a_ingest": h(TENANT_A, {"ingest"})}


async def _list(api, keys, who: str = "a", **params: Any) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await api.get("/api/v1/anomalies", params=params, headers=keys[who])
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _ids(episodes: list[dict[str, Any]]) -> list[int]:
    return [int(e["episode_id"], 16) for e in episodes]


async def test_lists_the_last_day_newest_first_each_episode_as_it_stands(api, seeded, keys) -> None:
    episodes = await _list(api, keys)
    assert _ids(episodes) == [3, 2, 1, 10, 11, 12, 13]
    billing, overall, closed = episodes[0], episodes[1], episodes[2]
    assert billing["status"] == "open" and billing["score"] == 8.0 and billing["ended_at"] is None
    assert (billing["service"], billing["provider"], billing["model"], billing["overall"]) == (*BILLING, False)
    assert overall["overall"] is True and overall["service"] is None and overall["direction"] == "down"
    assert closed["status"] == "closed" and closed["metric"] == "latency_p95_ms"
    assert closed["started_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime((NOW - 60) * 60)))
    assert closed["ended_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime((NOW - 50) * 60)))


@pytest.mark.parametrize(("params", "expected"), [
    ({"service": "chat-api"}, [1, 10, 11, 12, 13]),
    ({"provider": "anthropic"}, [3]),
    ({"model": "gpt-4o", "metric": "latency_p95_ms"}, [1]),
    ({"metric": "requests"}, [2]),
    ({"status": "open"}, [3, 2, 10, 11, 12, 13]),
    ({"status": "closed"}, [1]),
    ({"overall": "true"}, [2]),
    ({"overall": "false", "status": "open", "metric": "error_rate"}, [3]),
])
async def test_filters_narrow_the_list(api, seeded, keys, params, expected) -> None:
    assert _ids(await _list(api, keys, **params)) == expected


async def test_the_time_range_finds_episodes_that_overlap_it(api, seeded, keys) -> None:
    def at(minute: int) -> str:
        return str(minute * 60)

    assert _ids(await _list(api, keys, start=at(NOW - 4 * 1440), end=at(NOW - 2 * 1440))) == [4]
    # ended before the range: not listed; still open: listed however long ago it started
    assert _ids(await _list(api, keys, start=at(NOW - 49), end=at(NOW))) == [3, 2, 10, 11, 12, 13]


async def test_cursor_pagination_visits_every_episode_once(api, seeded, keys) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await api.get("/api/v1/anomalies", params=params, headers=keys["a"])).json()
        seen += _ids(body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [3, 2, 1, 10, 11, 12, 13] and pages == 4


async def test_a_tenant_sees_only_its_own_anomalies(api, seeded, keys) -> None:
    assert _ids(await _list(api, keys, "b")) == [99]
    assert 99 not in _ids(await _list(api, keys, "a", service="chat-api", metric="latency_p95_ms"))


@pytest.mark.parametrize(("params", "says"), [
    ({"metric": "latency"}, "metric"),
    ({"status": "firing"}, "status"),
    ({"overall": "maybe"}, "overall"),
    ({"cursor": "not-a-cursor"}, "cursor is not valid"),
    ({"limit": "0"}, "limit"),
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start must be before end"),
])
async def test_bad_parameters_get_a_400_that_names_them(api, seeded, keys, params, says) -> None:
    r = await api.get("/api/v1/anomalies", params=params, headers=keys["a"])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and says in error["message"]


async def test_reading_anomalies_needs_a_key_with_the_read_scope(api, seeded, keys) -> None:
    assert (await api.get("/api/v1/anomalies")).status_code == 401
    assert (await api.get("/api/v1/anomalies", headers=keys["a_ingest"])).status_code == 403


async def test_the_openapi_document_describes_the_anomaly_page(api) -> None:
    spec = (await api.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/anomalies"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnomalyPage")
    fields = spec["components"]["schemas"]["AnomalyOut"]["properties"]
    assert {"episode_id", "metric", "status", "started_at", "ended_at", "peak_score", "expected"} <= fields.keys()
    assert {p["name"] for p in operation["parameters"]} >= {"service", "provider", "model", "metric", "status", "start",
                                                           "end", "cursor", "limit", "overall"}
