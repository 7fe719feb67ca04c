"""The worker's own small HTTP server: `/metrics`, `/health` (the process answers) and `/ready`
(503 with the store's last error while any sink write is failing and being retried). `up`, which
has no worker port, puts the same sink check into its ingest's and query's `/ready`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from llmscope.http import Check, CheckFailed, RequestIdMiddleware, install_error_handlers, install_health
from llmscope.metrics import install_metrics
from streams.sink import StoreSink


def sink_writes(sink: StoreSink) -> Check:
    """A readiness check: no store write of the sink is failing now (else the store's last error)."""

    async def check() -> bool:
        if not sink.health.healthy:
            raise CheckFailed(f"{sink.health.failing_writes} store write(s) failing: {sink.health.last_error}")
        return True

    return check


def create_worker_http_app(sink: StoreSink) -> FastAPI:
    app = FastAPI(title="LLMScope worker", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app, "worker")
    install_error_handlers(app)

    async def written() -> dict[str, Any]:
        h = sink.health
        return {"rows_written": h.rows_written, "batches_written": h.batches_written, "store_retries": h.retries}

    install_health(app, {"sink": sink_writes(sink)}, "Readiness: the store takes the sink's writes", extra=written)
    return app
