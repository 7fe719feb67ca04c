"""What both HTTP roles share: request ids, authentication, the one error shape and the one place
our exceptions become HTTP answers, liveness and readiness, the uvicorn server we drive ourselves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmscope.auth import KeyResolver, Principal, extract_key
from llmscope.errors import LLMScopeError
from llmscope.logs import redact, request_id_var, tenant_var
from llmscope.storage import Store

REQUEST_ID_HEADER = "x-request-id"

log = logging.getLogger(__name__)


class ResponseStatus:
    """An ASGI `send` that remembers the status the app answered, for middleware that records
    requests (metrics, audit); 500 until an answer starts, which is what the client gets if the app
    raises before answering (an outer handler answers it)."""

    def __init__(self, send: Send) -> None:
        self.code = 500
        self._send = send

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


class AnswerHeaders:
    """Middleware that adds `headers(scope)` to every HTTP answer. Plain ASGI: a BaseHTTPMiddleware
    runs every request in a task group and memory streams of its own, which cost the ingest a
    quarter of its CPU time (bench/ingest_per_core.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def headers(self, scope: Scope) -> Mapping[str, str]:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and (headers := self.headers(scope)):
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.handle(scope, receive, send_with_headers)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request, its answer sent through `send`; a subclass wraps the app here."""
        await self.app(scope, receive, send)


class RequestIdMiddleware(AnswerHeaders):
    """Each request's id (the client's `x-request-id` when it is a sensible one): on the request's
    state, on every log line the request causes (llmscope/logs.py) and on the answer."""

    def headers(self, scope: Scope) -> Mapping[str, str]:
        return {REQUEST_ID_HEADER: scope["state"]["request_id"]}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid  # what `request.state.request_id` reads
        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send)
        finally:
            request_id_var.reset(token)


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or uuid.uuid4().hex


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable: bad_request, unauthenticated, forbidden, not_found, …")
    message: str = Field(description="What went wrong, for a person.")
    request_id: str = Field(description="Also in the x-request-id header; quote it when reporting a problem.")


class ErrorBody(BaseModel):
    """The one error shape of our JSON APIs."""

    error: ErrorDetail


# For `responses=` of every JSON operation: FastAPI then also leaves out its 422 (ours is a 400).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request cannot be answered as sent (the error says why)."},
    "5XX": {"model": ErrorBody, "description": "A dependency is unavailable (503, with Retry-After) or an internal error."},
}


def error_response(request: Request, status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    """The one error shape of our JSON APIs: {"error": {"code", "message", "request_id"}}."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    body = {"error": {"code": code, "message": message, "request_id": request_id(request)}}
    return JSONResponse(body, status_code=status, headers=headers)


# An error's answer in another wire format: (request, status, code, message, retry_after) -> Response.
ErrorEncoder = Callable[[Request, int, str, str, "int | None"], Response]


def install_error_handlers(app: FastAPI, wire_formats: Mapping[str, ErrorEncoder] | None = None) -> None:
    """Map every error to one answer: our exceptions by their status and code, request validation
    to 400, unknown paths and methods to 404/405, anything else to 500 (logged with the request id).
    Paths under a prefix of `wire_formats` answer in that format instead of the JSON error shape."""
    formats = dict(wire_formats or {})

    def answer(request: Request, status: int, code: str, message: str, retry_after: int | None = None) -> Response:
        encode = next((e for prefix, e in formats.items() if request.url.path.startswith(prefix)), error_response)
        # A message may quote a dependency's error, and that a URL with its password: masked as in logs.
        return encode(request, status, code, redact(message), retry_after)

    @app.exception_handler(LLMScopeError)
    async def _known(request: Request, exc: LLMScopeError) -> Response:
        return answer(request, exc.status, exc.code, exc.message, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, 400, "bad_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return answer(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        rid = request_id(request)  # outside the middleware that set it for the request's other lines
        log.exception("unhandled error on %s (request id %s)", request.url.path, rid, extra={"request_id": rid})
        return answer(request, 500, "internal", "internal error; quote the request id when reporting it")


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")  # a role may add numbers of its own

    status: Literal["ready", "unavailable"]
    checks: dict[str, bool] = Field(description="Each dependency: whether it answered just now.")
    errors: dict[str, str] = Field(default_factory=dict, description="Why a failing check fails, where known.")


class CheckFailed(Exception):
    """Raised by a readiness check that knows why it fails; the message goes into `errors`."""


Check = Callable[[], Awaitable[bool]]


def store_answers(store: Store) -> Check:
    """A readiness check: the store answers a query now."""
    return lambda: asyncio.to_thread(store.ping)


def install_health(
    app: FastAPI, checks: Mapping[str, Check], summary: str,
    extra: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> None:
    """`/health` (the process answers) and `/ready` (every check passes: 200, else 503). `extra`
    adds numbers to a ready answer."""

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready", summary=summary, response_model=None,
        responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "A dependency does not answer."}},
    )
    async def ready() -> JSONResponse:
        results, errors = {}, {}
        for name, check in checks.items():
            try:
                results[name] = await check()
            except CheckFailed as exc:  # a dependency's error may quote its URL, password included
                results[name], errors[name] = False, redact(str(exc))
        ok = all(results.values())
        body: dict[str, Any] = {"status": "ready" if ok else "unavailable", "checks": results}
        if errors:
            body["errors"] = errors
        if ok and extra is not None:
            body.update(await extra())
        return JSONResponse(body, status_code=200 if ok else 503)


async def authenticate(request: Request, resolver: KeyResolver, scope: str, *alternatives: str) -> Principal:
    """The caller's principal, if its key holds `scope` or one of the alternatives."""
    key = extract_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    principal = await resolver.resolve(key, request.client.host if request.client else "")
    tenant_var.set(principal.tenant_id)  # the rest of the request's log lines name its tenant
    request.state.principal = principal  # for the audit log (llmscope/audit.py), also when the scope is missing
    principal.require(scope, *alternatives)
    return principal


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the role runner owns SIGINT/SIGTERM and stops
    every component in order. It also waits for `should_exit` instead of polling it ten times a
    second, which was a third of an idle `up`'s CPU (two servers in one process)."""

    _exit: asyncio.Event | None = None

    @property
    def _exit_requested(self) -> asyncio.Event:
        if self._exit is None:
            self._exit = asyncio.Event()
        return self._exit

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    @property
    def port(self) -> int:
        """The port it listens on: the one it was given, or the one the system chose for port 0."""
        return int(self.servers[0].sockets[0].getsockname()[1]) if self.servers else self.config.port

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        # One tick a second: uvicorn's on_tick refreshes the Date header every tenth tick of its own.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), 1.0)


def make_server(app: FastAPI, host: str, port: int, tls: Mapping[str, Any] | None = None) -> Server:
    """`tls`: uvicorn's ssl_* arguments (Settings.server_tls); none serves plain HTTP."""
    # log_config=None: uvicorn's lines go through our handler (JSON or text, secrets masked).
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", log_config=None, **(tls or {})
    )
    return Server(config)
