"""The live stream: `WS /api/v1/stream`, the caller's tenant's spans as soon as they are stored.

Authentication. Browsers cannot set headers on a WebSocket, and a key in the URL ends up in
access logs and browser history, so the key may come in the first message instead:
`{"type": "auth", "api_key": "lls_…", "filters": {…}}`, within `AUTH_SECONDS`. Clients that can
set headers (curl, Python) may send `Authorization: Bearer <key>` or `x-api-key` on the upgrade
request instead and skip that message. The key needs the `read` scope; it is checked again every
`api_key_cache_seconds`, so a revoked key's socket is closed within two cache periods.

Filters are chosen with query parameters or the auth message, and changed on the open socket with
`{"type": "filters", "filters": {…}}` (the whole new set; the server answers with the set in force).
They are applied in the server, before a message takes queue space (see llmscope/live.py).

Server messages, one JSON object per frame, each with a `type`: `ready` (authenticated; the tenant
and filters), `span` (schemas/live.py), `dropped` (`count` messages missed because the client read
too slowly, `null` if unknown), `filters`, `error` (a bad command; the socket stays open), `ping`
(after `live_ping_seconds` without traffic; clients may send `{"type": "ping"}` and get `pong`).
Close codes: 4400 bad first message, 4401 missing/invalid/revoked key, 4403 key without the read
scope, 4408 no auth message in time, 1013 server at its connection limit or key store unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from llmscope.auth import KeyResolver, Principal, extract_key
from llmscope.errors import LLMScopeError, Unavailable
from llmscope.live import LiveHub, Subscription
from llmscope.settings import Settings
from schemas.live import LiveFilter

log = logging.getLogger(__name__)
router = APIRouter(tags=["stream"])

AUTH_SECONDS = 10.0
MAX_COMMAND_BYTES = 8 * 1024
CLOSE_BAD_REQUEST, CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN, CLOSE_AUTH_TIMEOUT = 4400, 4401, 4403, 4408
CLOSE_TRY_LATER = 1013
_STATUS_TO_CLOSE = {401: CLOSE_UNAUTHENTICATED, 403: CLOSE_FORBIDDEN, 503: CLOSE_TRY_LATER}


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason[:120]  # a close reason holds 123 bytes


def _filters(given: Any) -> LiveFilter:
    try:
        return LiveFilter.model_validate(given or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Refused(CLOSE_BAD_REQUEST, f"filters.{where}: {first.get('msg', 'invalid')}" if where else "bad filters") from None


def _decode(text: str) -> dict[str, Any]:
    if len(text) > MAX_COMMAND_BYTES:
        raise Refused(CLOSE_BAD_REQUEST, f"messages to the server are at most {MAX_COMMAND_BYTES} bytes")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Refused(CLOSE_BAD_REQUEST, "messages must be JSON objects") from None
    if not isinstance(value, dict):
        raise Refused(CLOSE_BAD_REQUEST, "messages must be JSON objects")
    return value


async def _handshake(ws: WebSocket) -> tuple[str, LiveFilter]:
    """The key (header or first message) and the initial filters (query string, then message)."""
    query = dict(ws.query_params)
    header_key = ws.headers.get("authorization") or ws.headers.get("x-api-key")
    if header_key:
        try:
            return extract_key(ws.headers.get("authorization"), ws.headers.get("x-api-key")), _filters(query)
        except LLMScopeError as exc:
            raise Refused(CLOSE_UNAUTHENTICATED, exc.message) from None
    try:
        first = _decode(await asyncio.wait_for(ws.receive_text(), AUTH_SECONDS))
    except TimeoutError:
        raise Refused(CLOSE_AUTH_TIMEOUT, f"send {{\"type\": \"auth\", \"api_key\": …}} within {AUTH_SECONDS:.0f}s") from None
    key = first.get("api_key")
    if first.get("type") != "auth" or not isinstance(key, str) or not key:
        raise Refused(CLOSE_UNAUTHENTICATED, 'first message must be {"type": "auth", "api_key": "<key>"}')
    extra = first.get("filters")
    if extra is not None and not isinstance(extra, dict):
        raise Refused(CLOSE_BAD_REQUEST, "filters must be an object")
    return key, _filters({**query, **(extra or {})})


async def _principal(resolver: KeyResolver, key: str) -> Principal:
    try:
        principal = await resolver.resolve(key)
        principal.require("read")
    except LLMScopeError as exc:
        raise Refused(_STATUS_TO_CLOSE.get(exc.status, CLOSE_UNAUTHENTICATED), exc.message) from None
    return principal


class _Socket:
    """Serialises sends: the command reader answers on the same socket the writer streams to."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self._lock:
            await self.ws.send_text(text)

    async def send_json(self, value: dict[str, Any]) -> None:
        await self.send(orjson.dumps(value).decode())


async def _read_commands(sock: _Socket, subscription: Subscription) -> None:
    while True:
        text = await sock.ws.receive_text()
        try:
            command = _decode(text)
            kind = command.get("type")
            if kind == "filters":
                if command.get("filters") is not None and not isinstance(command["filters"], dict):
                    raise Refused(CLOSE_BAD_REQUEST, "filters must be an object")
                new = _filters(command.get("filters"))
                subscription.accepts = new.matches
                await sock.send_json({"type": "filters", "filters": new.model_dump(exclude_none=True)})
            elif kind == "ping":
                await sock.send_json({"type": "pong"})
            else:
                raise Refused(CLOSE_BAD_REQUEST, f"unknown message type {str(kind)[:40]!r}; send 'filters' or 'ping'")
        except Refused as exc:
            await sock.send_json({"type": "error", "error": {"code": "bad_request", "message": exc.reason}})


async def _write(sock: _Socket, subscription: Subscription, resolver: KeyResolver, key: str, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    recheck_at = loop.time() + settings.api_key_cache_seconds
    while True:
        batch = await subscription.next_batch(settings.live_ping_seconds)
        if batch is None:
            await sock.send('{"type":"ping"}')
        else:
            for message in batch:
                await sock.send(message.text)
            # What was queued came before what was dropped: tell the loss in that order.
            if loss := subscription.take_loss():
                await sock.send_json(loss)
        if loop.time() >= recheck_at:
            await _principal(resolver, key)  # raises Refused once the key is revoked
            recheck_at = loop.time() + settings.api_key_cache_seconds


@router.websocket("/api/v1/stream")
async def stream(ws: WebSocket) -> None:
    hub: LiveHub = ws.app.state.live
    settings: Settings = ws.app.state.settings
    resolver: KeyResolver = ws.app.state.resolver
    await ws.accept()
    try:
        if hub.subscriber_count >= settings.live_max_connections:
            raise Refused(CLOSE_TRY_LATER, "too many live connections on this server; retry shortly")
        key, filters = await _handshake(ws)
        principal = await _principal(resolver, key)
    except Refused as exc:
        await _close(ws, exc.code, exc.reason)
        return
    except WebSocketDisconnect:
        return
    subscription = hub.subscribe(principal.tenant_id, filters.matches, settings.live_queue_messages)
    sock = _Socket(ws)
    tasks: list[asyncio.Task[None]] = []
    try:
        await sock.send_json({"type": "ready", "tenant_id": principal.tenant_id, "filters": filters.model_dump(exclude_none=True)})
        tasks = [
            asyncio.create_task(_read_commands(sock, subscription)),
            asyncio.create_task(_write(sock, subscription, resolver, key, settings)),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if isinstance(error, Refused):
                await _close(ws, error.code, error.reason)
            elif error is not None and not isinstance(error, (WebSocketDisconnect, Unavailable, RuntimeError, OSError)):
                log.warning("live socket ended by %r", error)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.unsubscribe(subscription)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # already closed by the client
        await ws.close(code, reason)
