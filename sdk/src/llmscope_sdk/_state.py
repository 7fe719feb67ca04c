"""The process-wide Client behind init(), and the one path every recorded event takes to it."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from typing import Any

from llmscope_sdk.client import Client

log = logging.getLogger("llmscope_sdk")
_client: Client | None = None
_lock = threading.Lock()
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_BAD_OPERATION_CHARS = re.compile(r"[^a-z0-9_.-]")


def init(api_key: str | None = None, endpoint: str | None = None, **opts: Any) -> Client:
    """Create (or replace) the global Client; unset arguments come from LLMSCOPE_API_KEY / LLMSCOPE_ENDPOINT."""
    global _client
    with _lock:
        old, _client = _client, Client(api_key, endpoint, **opts)
    if old is not None:
        old.shutdown()
    return _client


def get_client() -> Client:
    """The global Client; made from the environment on first use, and left disabled if nothing is configured."""
    global _client
    with _lock:
        if _client is None:
            configured = bool(os.environ.get("LLMSCOPE_API_KEY") or os.environ.get("LLMSCOPE_ENDPOINT"))
            if not configured:
                log.info("llmscope: not initialised and LLMSCOPE_API_KEY/LLMSCOPE_ENDPOINT unset; events are dropped")
            _client = Client(enabled=configured)
        return _client


def flush(timeout: float | None = 5.0) -> bool:
    return get_client().flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    return get_client().shutdown(timeout)


def within_budget(budget_id: str, *, default: bool = True) -> bool:
    """The global Client's budget check (Client.within_budget): `default` when the status cannot be had."""
    return get_client().within_budget(budget_id, default=default)


def emit(event: dict[str, Any], client: Client | None = None) -> None:
    """Finish an event (service name, sanitised names) and queue it; never raises."""
    try:
        target = client or get_client()
        if not target.enabled:
            return
        if target.service_name and not event.get("service_name"):
            event["service_name"] = target.service_name
        event["operation"] = _operation(event.get("operation", "chat"))
        if event.get("metadata"):
            event["metadata"] = _metadata(event["metadata"])
        if event.get("tags"):
            event["tags"] = [str(t)[:128] for t in event["tags"] if str(t)][:64]
        for key in ("name", "model", "response_model", "user_id", "session_id"):
            if isinstance(event.get(key), str):
                event[key] = event[key][:256]
        target.submit({k: v for k, v in event.items() if v is not None and v != "" and v != [] and v != {}})
    except Exception:
        log.debug("llmscope: could not record an event", exc_info=True)


def _operation(kind: Any) -> str:
    text = _BAD_OPERATION_CHARS.sub("_", str(kind).lower())[:64]
    return text if text[:1].isalpha() else f"x{text}"[:64]


def _metadata(meta: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in list(meta.items())[:64]:
        key = _BAD_KEY_CHARS.sub("_", str(key))[:128] or "_"
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif not (value is None or isinstance(value, (str, int, float, bool))):
            value = str(value)
        out[key] = value[:1024] if isinstance(value, str) else value
    return out
