"""User spans: `span(...)` and `@trace` keep the current span in a ContextVar so calls made inside nest under it."""

from __future__ import annotations

import functools
import inspect
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

from llmscope_sdk import _events
from llmscope_sdk._state import emit, get_client
from llmscope_sdk.client import Client

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SpanContext:
    trace_id: str
    span_id: str
    user_id: str = ""
    session_id: str = ""


_current: ContextVar[SpanContext | None] = ContextVar("llmscope_current_span", default=None)


def current_span() -> SpanContext | None:
    return _current.get()


def link_fields() -> dict[str, str]:
    """trace_id/parent_span_id (and inherited user/session) for an event recorded now, if inside a span."""
    ctx = _current.get()
    if ctx is None:
        return {}  # a lone call: the server derives trace and span ids from the event id
    return {
        "trace_id": ctx.trace_id,
        "parent_span_id": ctx.span_id,
        "user_id": ctx.user_id,
        "session_id": ctx.session_id,
    }


class SpanScope:
    """One user span; a context manager for `with` and `async with`, submitted as an event when it ends."""

    def __init__(
        self,
        name: str,
        kind: str = "span",
        *,
        input: Any = None,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        client: Client | None = None,
    ) -> None:
        self.name, self.kind, self.input, self.output = name, kind, input, None
        self.tags = list(tags or [])
        self.metadata = dict(metadata or {})
        self._user_id, self._session_id, self._client = user_id, session_id, client
        self._token: Token[SpanContext | None] | None = None
        self.context: SpanContext | None = None

    def set_input(self, value: Any) -> None:
        self.input = value

    def set_output(self, value: Any) -> None:
        self.output = value

    def set_metadata(self, **values: Any) -> None:
        self.metadata.update(values)

    def __enter__(self) -> SpanScope:
        parent = _current.get()
        self.context = SpanContext(
            trace_id=parent.trace_id if parent else secrets.token_hex(16),
            span_id=secrets.token_hex(8),
            user_id=self._user_id if self._user_id is not None else (parent.user_id if parent else ""),
            session_id=self._session_id if self._session_id is not None else (parent.session_id if parent else ""),
        )
        self._parent_span_id = parent.span_id if parent else None
        self._start_ns, self._t0 = time.time_ns(), time.perf_counter()
        self._token = _current.set(self.context)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        latency_ms = (time.perf_counter() - self._t0) * 1000
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # exited in another context (e.g. a generator resumed elsewhere): just unset
                _current.set(None)
        self._record(latency_ms, exc)

    async def __aenter__(self) -> SpanScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _record(self, latency_ms: float, exc: BaseException | None) -> None:
        try:
            client = self._client or get_client()
            ctx = self.context
            assert ctx is not None
            event: dict[str, Any] = {
                "id": _events.new_event_id(),
                "timestamp": self._start_ns,
                "latency_ms": round(latency_ms, 3),
                "trace_id": ctx.trace_id,
                "span_id": ctx.span_id,
                "parent_span_id": self._parent_span_id,
                "name": self.name,
                "operation": self.kind,
                "status": "error" if exc is not None else "ok",
                "error": _events.error_info(exc) if exc is not None else None,
                "user_id": ctx.user_id,
                "session_id": ctx.session_id,
                "tags": self.tags,
                "metadata": self.metadata,
            }
            if client.capture_content:
                event["input"] = _events.content(self.input, client.max_content_chars)
                event["output"] = _events.content(self.output, client.max_content_chars)
            emit(event, client)
        except Exception:
            pass  # never let bookkeeping break the user's code


def span(name: str, kind: str = "span", **options: Any) -> SpanScope:
    """`with span("plan", kind="agent"):` (or `async with`); LLM calls inside become its children."""
    return SpanScope(name, kind, **options)


def trace(func: F | None = None, *, name: str | None = None, kind: str = "span", **options: Any) -> Any:
    """Decorator: `@trace`, `@trace(name="retrieve", kind="tool")`; sync and async functions."""

    def decorate(fn: F) -> F:
        span_name = name or getattr(fn, "__qualname__", "span")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with SpanScope(span_name, kind, **options):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with SpanScope(span_name, kind, **options):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
