"""WS /api/v1/stream over a real uvicorn server: authentication without headers, tenant scoping,
server-side filters changeable on the open socket, bounded queues that report drops, pings.

Stored batches are published straight into the hub the app was built with, as the worker does
after its INSERT (the end-to-end path through ingest and the worker is in tests/console)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from llmscope.auth import KeyResolver, create_key
from llmscope.broker import free_port
from llmscope.http import make_server
from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store
from query import stream
from query.app import create_query_app
from schemas import span_columns
from streams.stages.normalise import normalise
from tests.otlp_factory import llm_span, request_of


class Server:
    def __init__(self, url: str, hub: LiveHub) -> None:
        self.url, self.hub = url, hub


@pytest.fixture(scope="module")
async def server(settings: Settings, store: Store) -> AsyncIterator[Server]:
    s = settings.model_copy(update={"live_ping_seconds": 0.5, "live_queue_messages": 5, "api_key_cache_seconds": 0.5})
    hub = LiveHub()
    port = free_port()
    http = make_server(create_query_app(s, store, KeyResolver(store, 0.5), hub), "127.0.0.1", port)
    task = asyncio.create_task(http.serve())
    while not http.started:
        await asyncio.sleep(0.02)
    yield Server(f"ws://127.0.0.1:{port}/api/v1/stream", hub)
    http.should_exit = True
    await task


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, str]:
    return {
        "a": create_key(store, "live-a", "live", {"read"}),
        "b": create_key(store, "live-b", "live", {"read"}),
        "ingest_only": create_key(store, "live-a", "live", {"ingest"}),
    }


def rows(tenant: str, n: int = 1, **extra: Any) -> bytes:
    spans = [llm_span(extra=extra.get("attrs"), error=extra.get("error", False), model=extra.get("model", "gpt-4o"))
             for _ in range(n)]
    stored = normalise(request_of(spans, service=extra.get("service", "bot")), tenant)
    return span_columns.encode(stored, [0] * len(stored))


async def recv(ws: ClientConnection, timeout: float = 5.0, skip_pings: bool = True) -> dict[str, Any]:
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if not (skip_pings and message["type"] == "ping"):
            return message


async def open_stream(server: Server, key: str, filters: dict[str, Any] | None = None) -> ClientConnection:
    ws = await connect(server.url)
    await ws.send(orjson.dumps({"type": "auth", "api_key": key, **({"filters": filters} if filters else {})}).decode())
    ready = await recv(ws)
    assert ready["type"] == "ready", ready
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def test_first_message_auth_then_stored_spans_arrive_as_small_messages(server, keys) -> None:
    async with await open_stream(server, keys["a"]) as ws:
        await server.hub.publish_spans(rows("live-a", attrs={"gen_ai.prompt": "hello there", "user.id": "u9"}))
        m = await recv(ws)
        assert m["type"] == "span" and m["service"] == "bot" and m["input"] == "hello there" and m["user_id"] == "u9"
        assert set(m) >= {"trace_id", "span_id", "time", "model", "operation", "status", "latency_ms", "cost_usd", "output"}


async def test_header_auth_works_for_clients_that_can_set_headers(server, keys) -> None:
    async with connect(server.url + "?service=bot", additional_headers={"authorization": f"Bearer {keys['a']}"}) as ws:
        ready = await recv(ws)
        assert ready == {"type": "ready", "tenant_id": "live-a", "filters": {"service": "bot"}}


async def test_a_tenant_never_sees_another_tenants_spans(server, keys) -> None:
    async with await open_stream(server, keys["a"]) as a, await open_stream(server, keys["b"]) as b:
        await server.hub.publish_spans(rows("live-b", service="b-only"))
        await server.hub.publish_spans(rows("live-a", service="a-only"))
        assert (await recv(a))["service"] == "a-only"
        assert (await recv(b))["service"] == "b-only"


@pytest.mark.parametrize(
    ("first", "code", "words"),
    [
        ({"type": "auth", "api_key": "lls_" + "0" * 40}, 4401, "invalid or revoked"),
        ({"type": "auth", "api_key": "lls_wrong"}, 4401, "mistyped"),
        ({"type": "auth"}, 4401, "first message must be"),
        ({"type": "hello"}, 4401, "first message must be"),
        ({"type": "auth", "api_key": "KEY", "filters": {"colour": "red"}}, 4400, "filters.colour"),
        ({"type": "auth", "api_key": "KEY", "filters": {"min_latency_ms": -1}}, 4400, "min_latency_ms"),
        ({"type": "auth", "api_key": "KEY", "filters": "service=bot"}, 4400, "filters must be an object"),
    ],
)
async def test_bad_first_messages_close_with_a_clear_code(server, keys, first, code, words) -> None:
    if first.get("api_key") == "KEY":
        first = {**first, "api_key": keys["a"]}
    async with connect(server.url) as ws:
        await ws.send(orjson.dumps(first).decode())
        got_code, reason = await closed_with(ws)
    assert got_code == code and words in reason, (got_code, reason)


async def test_non_json_first_message_is_a_bad_request(server) -> None:
    async with connect(server.url) as ws:
        await ws.send("lls_key_as_plain_text")
        assert (await closed_with(ws))[0] == 4400


async def test_a_key_without_read_scope_is_forbidden(server, keys) -> None:
    async with connect(server.url) as ws:
        await ws.send(orjson.dumps({"type": "auth", "api_key": keys["ingest_only"]}).decode())
        code, reason = await closed_with(ws)
    assert code == 4403 and "read" in reason


async def test_no_auth_message_in_time_closes_the_socket(server, monkeypatch) -> None:
    monkeypatch.setattr(stream, "AUTH_SECONDS", 0.3)
    async with connect(server.url) as ws:
        assert (await closed_with(ws))[0] == 4408


async def test_filters_apply_in_the_server_and_change_on_the_open_socket(server, keys) -> None:
    async with await open_stream(server, keys["a"], {"status": "error"}) as ws:
        await server.hub.publish_spans(rows("live-a", 3))
        await server.hub.publish_spans(rows("live-a", error=True, model="claude"))
        m = await recv(ws)
        assert m["status"] == "error" and m["model"] == "claude"
        await ws.send(orjson.dumps({"type": "filters", "filters": {"model": "gpt-4o", "min_latency_ms": 100}}).decode())
        assert await recv(ws) == {"type": "filters", "filters": {"model": "gpt-4o", "min_latency_ms": 100.0}}
        await server.hub.publish_spans(rows("live-a", error=True, model="claude"))
        await server.hub.publish_spans(rows("live-a"))
        m = await recv(ws)
        assert m["model"] == "gpt-4o" and m["status"] == "ok"


async def test_a_bad_command_gets_an_error_and_the_socket_stays_open(server, keys) -> None:
    async with await open_stream(server, keys["a"]) as ws:
        await ws.send(orjson.dumps({"type": "filters", "filters": {"status": "maybe"}}).decode())
        error = await recv(ws)
        assert error["type"] == "error" and error["error"]["code"] == "bad_request" and "status" in error["error"]["message"]
        await ws.send(orjson.dumps({"type": "subscribe"}).decode())
        assert (await recv(ws))["type"] == "error"
        await ws.send('{"type": "ping"}')
        assert await recv(ws) == {"type": "pong"}


async def test_a_slow_client_is_told_how_many_messages_it_missed(server, keys) -> None:
    """The queue holds 5 here: the 20 published at once while the client is not reading
    leave 5 queued and 15 counted, and nothing else in memory."""
    async with await open_stream(server, keys["a"]) as ws:
        subscription = next(iter(server.hub._subscriptions["live-a"]))
        subscription.accepts = lambda m: True
        # Publish synchronously into the queue (the socket writer cannot run in between).
        server.hub._deliver("live-a", [{"type": "span", "n": i} for i in range(20)])
        assert len(subscription._queue) == 5 and subscription.dropped == 15
        got = [await recv(ws) for _ in range(6)]
        assert [m.get("n") for m in got[:5]] == [0, 1, 2, 3, 4]
        assert got[5]["type"] == "dropped" and got[5]["count"] == 15


async def test_idle_sockets_get_pings(server, keys) -> None:
    async with await open_stream(server, keys["a"]) as ws:
        assert (await recv(ws, timeout=3, skip_pings=False))["type"] == "ping"


async def _settled(server) -> int:  # type: ignore[no-untyped-def]
    """The subscriber count once sockets other tests closed have been torn down server-side."""
    count, since = server.hub.subscriber_count, asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - since < 0.5:
        await asyncio.sleep(0.05)
        if server.hub.subscriber_count != count:
            count, since = server.hub.subscriber_count, asyncio.get_running_loop().time()
    return count


async def test_closing_the_socket_removes_its_subscription(server, keys) -> None:
    before = await _settled(server)
    ws = await open_stream(server, keys["b"])
    assert server.hub.subscriber_count == before + 1
    await ws.close()
    for _ in range(50):
        if server.hub.subscriber_count == before:
            break
        await asyncio.sleep(0.05)
    assert server.hub.subscriber_count == before


async def test_a_revoked_key_loses_its_socket(server, store) -> None:
    key = create_key(store, "live-revoke", "live", {"read"})
    async with await open_stream(server, key) as ws:
        rows_ = (await store.aquery(
            f"SELECT * FROM {store.database}.api_keys FINAL WHERE tenant_id = 'live-revoke'", {})).to_dicts()
        await asyncio.to_thread(store.insert_rows, f"{store.database}.api_keys", [{**rows_[0], "revoked": 1, "version": rows_[0]["version"] + 1}])
        code, reason = await closed_with(ws)
    assert code == 4401 and "revoked" in reason
