"""Rate limits as an exporter meets them: a real ingest app over the session's tansu broker, its
limiter in process or in the real Redis. 429 with Retry-After and an OTLP status body, the
RateLimit-Policy / RateLimit headers on every answer, spans counted, limits set through the admin
API applied within seconds, and an unreachable Redis that lets everything through (and is counted)."""

from __future__ import annotations

import socket
import time
import uuid

import http_sf
import httpx
from google.rpc import status_pb2

from ingest.ratelimit import RedisRateLimiter
from llmscope.auth import KeyResolver, create_key
from llmscope.settings import Settings
from llmscope.storage import Store
from query.app import create_query_app
from tests.ingest.conftest import MakeLimiter, make_client
from tests.otlp_factory import llm_span, request_of
from tests.prometheus import value
from tests.waiting import eventually

PB = {"content-type": "application/x-protobuf"}
JS = {"content-type": "application/json"}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def spans(n: int) -> bytes:
    return request_of([llm_span() for _ in range(n)]).SerializeToString()


def left(response: httpx.Response) -> dict[str, int]:
    """Policy -> units left, from the RateLimit header."""
    return {name: params["r"] for name, params in http_sf.parse(response.headers["ratelimit"].encode(), tltype="list")}


def quota(response: httpx.Response) -> dict[str, int]:
    """Policy -> bucket size, from the RateLimit-Policy header."""
    return {name: params["q"] for name, params in http_sf.parse(response.headers["ratelimit-policy"].encode(), tltype="list")}


async def test_answers_carry_the_quota_left_and_a_429_says_when_to_retry(
    settings: Settings, store: Store, make_limiter: MakeLimiter, run_id: str
) -> None:
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    client, producer = await make_client(
        settings, store, make_limiter(), rate_limit_per_key=1.0, rate_limit_spans_per_key=5.0, rate_limit_burst_seconds=2.0
    )
    async with client:
        answers = [await client.post("/v1/traces", content=spans(3), headers={**PB, **auth(key)}) for _ in range(3)]
        as_json = await client.post("/v1/traces", content=b'{"resourceSpans": []}', headers={**JS, **auth(key)})
    await producer.close()
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert quota(answers[0])["key-requests"] == 2 and quota(answers[0])["key-spans"] == 10
    assert [left(r)["key-requests"] for r in answers] == [1, 0, 0]
    assert [left(r)["key-spans"] for r in answers] == [7, 4, 4]  # a denial charges nothing
    denied = answers[2]
    assert denied.headers["retry-after"] == "1"
    status = status_pb2.Status.FromString(denied.content)  # OTLP exporters read this and retry
    assert status.code == 8 and "key-requests" in status.message  # RESOURCE_EXHAUSTED
    assert as_json.status_code == 429 and as_json.json()["code"] == 8 and "ratelimit" in as_json.headers


async def test_while_no_request_can_pass_the_body_is_not_even_read(
    settings: Settings, store: Store, make_limiter: MakeLimiter, run_id: str
) -> None:
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    client, producer = await make_client(settings, store, make_limiter(), rate_limit_per_key=0.5, rate_limit_burst_seconds=2.0)
    async with client:
        first = await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})
        garbage = await client.post("/v1/traces", content=b"\xff not protobuf", headers={**PB, **auth(key)})
        events = await client.post("/api/v1/events", content=b"{not json", headers={**JS, **auth(key)})
    await producer.close()
    assert first.status_code == 200
    # Decoded, these would be 400s: refused first, they cost neither a decode nor a Redis call.
    assert [garbage.status_code, events.status_code] == [429, 429]
    assert garbage.headers["retry-after"] == "2" and left(garbage)["key-requests"] == 0  # a token every 2 s
    assert status_pb2.Status.FromString(garbage.content).code == 8


async def test_a_big_export_uses_up_the_span_budget_and_a_small_one_then_waits(
    settings: Settings, store: Store, make_limiter: MakeLimiter, run_id: str
) -> None:
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    client, producer = await make_client(
        settings, store, make_limiter(), rate_limit_spans_per_key=100.0, rate_limit_burst_seconds=1.0
    )
    async with client:
        big = await client.post("/v1/traces", content=spans(150), headers={**PB, **auth(key)})
        small = await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})
        denied_at = time.monotonic()

        async def passes() -> bool:
            return (await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})).status_code == 200

        # 50 spans of debt and the one asked for, at 100 spans/s: about half a second.
        await eventually(passes, timeout=5.0, interval=0.02)
        waited = time.monotonic() - denied_at
    await producer.close()
    assert big.status_code == 200 and left(big)["key-spans"] == 0 and left(big)["key-requests"] > 0
    assert small.status_code == 429 and small.headers["retry-after"] == "1"
    assert 0.3 <= waited <= 2.0, waited


async def test_sdk_events_count_one_unit_each(settings: Settings, store: Store, run_id: str) -> None:
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    client, producer = await make_client(settings, store, rate_limit_spans_per_key=0.5, rate_limit_burst_seconds=10.0)
    event = {"timestamp": time.time_ns(), "operation": "chat", "model": "gpt-4o"}
    async with client:
        five = await client.post("/api/v1/events", json={"events": [{**event, "id": uuid.uuid4().hex} for _ in range(5)]},
                                 headers=auth(key))  # fmt: skip
        one = await client.post("/api/v1/events", json={**event, "id": uuid.uuid4().hex}, headers=auth(key))
    await producer.close()
    assert five.status_code == 200 and left(five)["key-spans"] == 0
    assert one.status_code == 429 and one.json()["error"]["code"] == "rate_limited"
    assert one.headers["retry-after"] == "2" and left(one)["key-spans"] == 0


async def test_a_limit_set_through_the_admin_api_applies_within_seconds(settings: Settings, store: Store) -> None:
    tenant = f"rl-{uuid.uuid4().hex[:8]}"
    key = create_key(store, tenant, "rate", {"ingest"})
    platform = create_key(store, f"platform-{uuid.uuid4().hex[:6]}", "platform", {"superadmin"})
    resolver = KeyResolver(store, 30.0)
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_query_app(settings, store, resolver)), base_url="http://query")
    client, producer = await make_client(settings, store, rate_limit_refresh_seconds=1.0)
    async with client, admin:
        before = await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})
        put = await admin.put(f"/api/v1/admin/tenants/{tenant}/limits", headers=auth(platform),
                              json={"key_requests_per_second": 0.5, "burst_seconds": 2})  # fmt: skip
        changed_at = time.monotonic()

        async def applied() -> bool:
            r = await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})
            return quota(r)["key-requests"] == 1

        await eventually(applied, timeout=10.0, interval=0.1)
        took = time.monotonic() - changed_at
        after = await client.post("/v1/traces", content=spans(1), headers={**PB, **auth(key)})
    await producer.close()
    await resolver.close()
    assert put.status_code == 200, put.text
    assert quota(before)["key-requests"] == 20_000  # GENEROUS: 10,000/s for 2 s
    assert took < 3.0, took  # one refresh (1 s) and the read
    assert after.status_code == 429


async def test_an_unreachable_redis_lets_every_export_through(settings: Settings, store: Store, run_id: str) -> None:
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{closed.getsockname()[1]}/0")
        client, producer = await make_client(settings, store, limiter, rate_limit_per_key=1.0, rate_limit_burst_seconds=1.0)
        async with client:
            before = (await client.get("/metrics")).text
            answers = [await client.post("/v1/traces", content=spans(2), headers={**PB, **auth(key)}) for _ in range(10)]
            after = (await client.get("/metrics")).text
        await producer.close()
        await limiter.close()
    assert [r.status_code for r in answers] == [200] * 10  # the bucket would allow 1
    assert all("ratelimit" not in r.headers for r in answers)  # no quota is claimed that was not counted
    fail_open = {"decision": "fail_open"}
    assert value(after, "llmscope_rate_limit_decisions_total", **fail_open) - value(before, "llmscope_rate_limit_decisions_total", **fail_open) == 10
