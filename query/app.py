"""The query role's HTTP surface: tenant-scoped reads, one error shape, health and readiness."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmscope.auth import KeyResolver
from llmscope.docs import install_docs
from llmscope.errors import LLMScopeError
from llmscope.http import RequestIdMiddleware, error_response
from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from query import deadletters, metrics, pii_settings, prices, stream, traces, whoami
from query.cache import make_cache
from query.console import install_console

log = logging.getLogger(__name__)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def create_query_app(settings: Settings, store: Store, resolver: KeyResolver, live: LiveHub | None = None) -> FastAPI:
    """`live` is the hub the worker publishes stored spans to (in process for `up`, Redis otherwise)."""
    app = FastAPI(title="LLMScope query API", version="0.1.0", docs_url=None)
    app.add_middleware(RequestIdMiddleware)
    app.state.store = store
    app.state.resolver = resolver
    app.state.settings = settings
    app.state.cache = make_cache(settings)
    app.state.live = live if live is not None else LiveHub()

    @app.exception_handler(LLMScopeError)
    async def _known(request: Request, exc: LLMScopeError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, "bad_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, "internal", "internal error; quote the request id when reporting it")

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: store reachable; and how many dead letters the last 24 hours parked")
    async def ready() -> JSONResponse:
        ok = await asyncio.to_thread(store.ping)
        body: dict[str, object] = {"status": "ready" if ok else "unavailable", "checks": {"store": ok}}
        if ok:
            try:
                body["dead_letters_24h"] = await asyncio.to_thread(deadletters.recent_count, store)
            except StoreError:
                pass  # readiness is about the store answering, which it just did; the count is extra
        return JSONResponse(body, status_code=200 if ok else 503)

    app.include_router(traces.router)
    app.include_router(metrics.router)
    app.include_router(prices.router)
    app.include_router(pii_settings.router)
    app.include_router(deadletters.router)
    app.include_router(whoami.router)
    app.include_router(stream.router)
    install_docs(app)
    install_console(app)
    return app
