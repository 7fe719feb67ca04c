"""The query role's HTTP surface: tenant-scoped reads, one error shape, health and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from llmscope.audit import AuditMiddleware
from llmscope.auth import KeyResolver
from llmscope.batched_writer import BatchedWriter
from llmscope.docs import install_docs
from llmscope.http import ERROR_RESPONSES, Check, RequestIdMiddleware, install_error_handlers, install_health, store_answers
from llmscope.key_invalidation import KeyInvalidation
from llmscope.live import LiveHub
from llmscope.metrics import install_metrics
from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from query import (
    admin_audit,
    admin_keys,
    admin_limits,
    admin_tenants,
    alert_rules,
    alerts,
    anomalies,
    budgets,
    deadletters,
    metrics,
    pii_settings,
    prices,
    stream,
    traces,
    webhooks,
    whoami,
)
from query.cache import make_cache
from query.console import install_console


def create_query_app(
    settings: Settings, store: Store, resolver: KeyResolver, live: LiveHub | None = None,
    key_invalidation: KeyInvalidation | None = None, audit: BatchedWriter | None = None,
    checks: Mapping[str, Check] | None = None,
) -> FastAPI:  # fmt: skip
    """`live` is the hub the worker publishes stored spans to (in process for `up`, Redis otherwise);
    `key_invalidation` tells every replica about revocations (default: this process only); `audit`
    writes the audit log (default: a writer of its own; the role closes the one it passes); `checks`
    are more readiness checks (`up` adds its worker's sink)."""
    app = FastAPI(title="LLMScope query API", version="0.1.0", docs_url=None)
    app.add_middleware(
        AuditMiddleware,
        writer=audit or BatchedWriter(store, "audit_log", settings.audit_flush_seconds, settings.audit_buffer_rows),
    )
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app, "query")
    app.state.store = store
    app.state.resolver = resolver
    app.state.settings = settings
    app.state.key_invalidation = key_invalidation or KeyInvalidation(resolver)
    app.state.cache = make_cache(settings)
    app.state.live = live if live is not None else LiveHub()
    app.state.watermarks = metrics.Watermarks(store)

    install_error_handlers(app)

    async def dead_letters() -> dict[str, Any]:
        try:
            return {"dead_letters_24h": await asyncio.to_thread(deadletters.recent_count, store)}
        except StoreError:
            return {}  # readiness is about the store answering, which it just did; the count is extra

    summary = "Readiness: store reachable; and how many dead letters the last 24 hours parked"
    install_health(app, {"store": store_answers(store), **(checks or {})}, summary, extra=dead_letters)
    routers = (traces, metrics, anomalies, prices, pii_settings, deadletters, whoami, alert_rules, alerts, webhooks,
               budgets)
    for module in (*routers, admin_tenants, admin_limits, admin_keys, admin_audit):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(stream.router)
    install_docs(app)
    install_console(app)
    return app
