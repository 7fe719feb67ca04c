"""One recorded LLM call, and transparent observation of the streams the provider SDKs return."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from llmscope_sdk import _events
from llmscope_sdk._state import emit, get_client
from llmscope_sdk.client import Client
from llmscope_sdk.context import link_fields

log = logging.getLogger("llmscope_sdk")


class LLMCall:
    """Started before the provider call; `finish()` or `fail()` submits exactly one event."""

    def __init__(self, client: Client | None, provider: str, operation: str, model: Any, input: Any) -> None:
        self.client = client or get_client()
        self.start_ns, self._t0 = time.time_ns(), time.perf_counter()
        self.event: dict[str, Any] = {
            "id": _events.new_event_id(),
            "timestamp": self.start_ns,
            "provider": provider,
            "operation": operation,
            "model": model if isinstance(model, str) else "",
            **link_fields(),
        }
        if self.client.capture_content:
            self.event["input"] = _events.content(input, self.client.max_content_chars)
        self._done = False

    def output(self, value: Any) -> None:
        if self.client.capture_content:
            self.event["output"] = _events.content(value, self.client.max_content_chars)

    def finish(self, **fields: Any) -> None:
        self._submit(status="ok", **fields)

    def fail(self, exc: BaseException, **fields: Any) -> None:
        self._submit(status="error", error=_events.error_info(exc), **fields)

    def _submit(self, **fields: Any) -> None:
        if self._done:
            return
        self._done = True
        event = {**self.event, **{k: v for k, v in fields.items() if v is not None}}
        event["latency_ms"] = round((time.perf_counter() - self._t0) * 1000, 3)
        event.setdefault("name", f"{event['operation']} {event.get('model', '')}".strip())
        emit(event, self.client)


def safely(fn: Callable[..., Any], *args: Any) -> Any:
    """Run our own bookkeeping; a bug in it is logged, never raised into the user's code."""
    try:
        return fn(*args)
    except Exception:
        log.debug("llmscope: instrumentation error", exc_info=True)
        return None


class StreamWatcher:
    """What a provider module plugs in to read a stream: see each item, maybe hide it, then finish the call."""

    def __init__(self, call: LLMCall) -> None:
        self.call = call

    def on_item(self, item: Any) -> None: ...

    def hide(self, item: Any) -> bool:
        return False

    def _fields(self) -> dict[str, Any]:
        """What the stream has told so far (usage, models, finish reasons), as LLMCall fields."""
        return {}

    def finish(self, interrupted: bool) -> None:
        fields = self._fields()
        if interrupted:
            fields["metadata"] = {"stream.interrupted": True}
        self.call.finish(**fields)

    def fail(self, exc: BaseException) -> None:
        self.call.fail(exc, **self._fields())


def _end(watcher: StreamWatcher, interrupted: bool) -> None:
    if not watcher.call._done:
        safely(watcher.finish, interrupted)


def observe_stream(stream: Any, watcher: StreamWatcher) -> Any:
    """Swap the stream's item iterator for one that reports to `watcher`; the caller keeps the very same object."""
    inner: Iterator[Any] = stream._iterator  # openai/anthropic Stream: __iter__ and __next__ both read it

    def watched() -> Iterator[Any]:
        try:
            for item in inner:
                safely(watcher.on_item, item)
                if safely(watcher.hide, item):
                    continue
                yield item
        except GeneratorExit:  # the caller stopped early: usage never arrives, but the call still happened
            _end(watcher, True)
            raise
        except BaseException as exc:
            safely(watcher.fail, exc)
            raise
        _end(watcher, False)

    stream._iterator = watched()
    original_close = stream.close

    def close(*args: Any, **kwargs: Any) -> Any:  # `with stream:` and early close(): record what was seen
        try:
            return original_close(*args, **kwargs)
        finally:
            _end(watcher, True)

    stream.close = close
    return stream


def observe_async_stream(stream: Any, watcher: StreamWatcher) -> Any:
    inner: AsyncIterator[Any] = stream._iterator

    async def watched() -> AsyncIterator[Any]:
        try:
            async for item in inner:
                safely(watcher.on_item, item)
                if safely(watcher.hide, item):
                    continue
                yield item
        except GeneratorExit:
            _end(watcher, True)
            raise
        except BaseException as exc:
            safely(watcher.fail, exc)
            raise
        _end(watcher, False)

    stream._iterator = watched()
    original_close = stream.close

    async def close(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original_close(*args, **kwargs)
        finally:
            _end(watcher, True)

    stream.close = close
    return stream


Start = Callable[[dict[str, Any]], LLMCall]
OnResult = Callable[[LLMCall, Any], None]
MakeWatcher = Callable[[LLMCall], StreamWatcher]


def instrument(resource: Any, name: str, start: Start, on_result: OnResult, make_watcher: MakeWatcher) -> None:
    """Replace `resource.name` (sync or async) on this instance only with a recording wrapper."""
    original = getattr(resource, name, None)
    if original is None or hasattr(original, "_llmscope_original"):
        return  # absent in this SDK version, or already wrapped

    def begin(kwargs: dict[str, Any]) -> LLMCall | None:
        call = safely(start, kwargs)  # may add stream_options to kwargs (a fresh dict: the caller's is untouched)
        return call if call is not None and call.client.enabled else None

    def settle(call: LLMCall | None, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if call is None:
            return result
        if kwargs.get("stream") is True and hasattr(result, "_iterator"):
            observe = observe_async_stream if is_async else observe_stream
            return safely(lambda: observe(result, make_watcher(call))) or result
        safely(on_result, call, result)
        safely(call.finish)  # no-op when on_result already finished it
        return result

    async def settle_later(call: LLMCall | None, pending: Any, kwargs: dict[str, Any]) -> Any:
        try:
            result = await pending
        except BaseException as exc:
            if call is not None:
                safely(call.fail, exc)
            raise
        return settle(call, result, kwargs, True)

    # The SDKs decorate their async methods with sync-looking wrappers, so look underneath.
    if inspect.iscoroutinefunction(inspect.unwrap(original)):

        @functools.wraps(original)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = begin(kwargs)
            try:
                pending = original(*args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    safely(call.fail, exc)
                raise
            return await settle_later(call, pending, kwargs)

    else:

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            call = begin(kwargs)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                if call is not None:
                    safely(call.fail, exc)
                raise
            if inspect.isawaitable(result):  # an async method we did not recognise as one
                return settle_later(call, result, kwargs)
            return settle(call, result, kwargs, False)

    wrapper._llmscope_original = original  # type: ignore[attr-defined]
    setattr(resource, name, wrapper)
