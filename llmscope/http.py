"""What both HTTP roles share: request ids, authentication, the uvicorn server we drive ourselves."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from llmscope.auth import KeyResolver, Principal, extract_key

REQUEST_ID_HEADER = "x-request-id"


class RequestIdMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        request.state.request_id = rid
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = rid
        return response


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or uuid.uuid4().hex


def error_response(request: Request, status: int, code: str, message: str, retry_after: int | None = None) -> JSONResponse:
    """The one error shape of our JSON APIs: {"error": {"code", "message", "request_id"}}."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    body = {"error": {"code": code, "message": message, "request_id": request_id(request)}}
    return JSONResponse(body, status_code=status, headers=headers)


async def authenticate(request: Request, resolver: KeyResolver, scope: str) -> Principal:
    key = extract_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
    principal = await resolver.resolve(key, request.client.host if request.client else "")
    principal.require(scope)
    return principal


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the role runner owns SIGINT/SIGTERM and stops
    every component in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: FastAPI, host: str, port: int) -> Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return Server(config)
