"""The audit log: every mutating request on an API (POST, PUT, PATCH, DELETE), who made it (key
prefix and tenant), what (method, path, the operation's name), when, its request id and the status
it got, refused ones included.

A middleware, so every router is covered without doing anything, those added later included. The
row is queued after the answer is ready and written in the background (llmscope/batched_writer.py),
so a slow or unreachable store never delays or fails the request it records.
"""

from __future__ import annotations

import time

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from llmscope.auth import KEY_PREFIX, Principal
from llmscope.batched_writer import BatchedWriter
from llmscope.http import ResponseStatus, request_id

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PREFIX_CHARS = 12  # as stored in api_keys.key_prefix; never more of a key than that


class AuditMiddleware:
    """Plain ASGI, so reads (most requests) pass straight through at no cost."""

    def __init__(self, app: ASGIApp, writer: BatchedWriter) -> None:
        self._app = app
        self._writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self._app(scope, receive, send)
            return
        status = ResponseStatus(send)
        try:
            await self._app(scope, receive, status)
        finally:
            self._writer.add(_row(Request(scope), status.code))


def _row(request: Request, status: int) -> dict[str, object]:
    principal: Principal | None = getattr(request.state, "principal", None)
    endpoint = request.scope.get("endpoint")
    return {
        "at": time.time(),
        "tenant_id": principal.tenant_id if principal else "",
        "key_prefix": principal.key_prefix if principal else _presented_prefix(request),
        "method": request.method,
        "path": request.url.path[:1000],
        "action": getattr(endpoint, "__name__", ""),
        "status": status,
        "request_id": request_id(request),
    }


def _presented_prefix(request: Request) -> str:
    """The prefix of a key that was refused (unknown, revoked, expired): who tried, without the secret."""
    presented = request.headers.get("x-api-key") or request.headers.get("authorization", "").partition(" ")[2]
    presented = presented.strip()
    return presented[:_PREFIX_CHARS] if presented.startswith(KEY_PREFIX) and presented.isprintable() else ""
