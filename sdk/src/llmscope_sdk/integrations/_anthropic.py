"""wrap_anthropic: messages.create (streamed or not) and messages.stream(), sync or async."""

from __future__ import annotations

from typing import Any

from llmscope_sdk._events import field, given, plain, reported, tokens
from llmscope_sdk.client import Client
from llmscope_sdk.integrations._call import (
    LLMCall,
    StreamWatcher,
    instrument,
    log,
    observe_async_stream,
    observe_stream,
    safely,
)


def wrap_anthropic(client: Any, *, llmscope_client: Client | None = None, provider: str = "anthropic") -> Any:
    """Instrument an Anthropic/AsyncAnthropic client in place and return it; calling twice is harmless."""

    def start(kwargs: dict[str, Any]) -> LLMCall:
        messages = kwargs.get("messages")
        system = kwargs.get("system")
        if given(system) and isinstance(messages, list):
            messages = [{"role": "system", "content": plain(system)}, *messages]
        return LLMCall(llmscope_client, provider, "chat", kwargs.get("model"), messages)

    try:
        messages = client.messages
        instrument(messages, "create", start, message_result, MessageStreamWatcher)
        original_stream = getattr(messages, "stream", None)
        if original_stream is not None and not hasattr(original_stream, "_llmscope_original"):

            def stream(*args: Any, **kwargs: Any) -> Any:
                manager = original_stream(*args, **kwargs)
                call = safely(start, kwargs)
                return manager if call is None else _ObservedManager(manager, call)

            stream._llmscope_original = original_stream  # type: ignore[attr-defined]
            messages.stream = stream
    except Exception:
        log.warning("llmscope: could not instrument this Anthropic client", exc_info=True)
    return client


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic's input_tokens excludes the cache: the total input is input + cache creation + cache read."""
    base = field(usage, "input_tokens") or 0
    write = field(usage, "cache_creation_input_tokens") or 0
    read = field(usage, "cache_read_input_tokens") or 0
    return reported(usage, tokens(
        base + write + read,
        field(usage, "output_tokens"),
        read,
        write,
        field(usage, "output_tokens_details", "thinking_tokens"),
    ))


def message_result(call: LLMCall, result: Any) -> None:
    call.output([{"role": "assistant", "content": plain(field(result, "content"))}])
    reason = field(result, "stop_reason")
    call.finish(
        response_model=field(result, "model"),
        finish_reasons=[reason] if isinstance(reason, str) else [],
        **anthropic_usage(field(result, "usage")),
    )


class MessageStreamWatcher(StreamWatcher):
    """message_start has the input side; each message_delta has cumulative counts, so the last one wins."""

    def __init__(self, call: LLMCall) -> None:
        super().__init__(call)
        self.model: str | None = None
        self.usage: dict[str, Any] = {}
        self.text: list[str] = []
        self.stop_reason: str | None = None

    def on_item(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "message_start":
            self.model = field(event, "message", "model")
            self._merge(field(event, "message", "usage"))
        elif kind == "message_delta":
            self._merge(field(event, "usage"))
            self.stop_reason = field(event, "delta", "stop_reason") or self.stop_reason
        elif kind == "content_block_delta" and isinstance(piece := field(event, "delta", "text"), str):
            self.text.append(piece)

    def _merge(self, usage: Any) -> None:
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = field(usage, name)
            if value is not None:  # absent/None in a delta means "unchanged", not zero
                self.usage[name] = value
        thinking = field(usage, "output_tokens_details", "thinking_tokens")
        if thinking is not None:
            self.usage["output_tokens_details"] = {"thinking_tokens": thinking}

    def _fields(self) -> dict[str, Any]:
        self.call.output([{"role": "assistant", "content": "".join(self.text)}])
        return {
            "response_model": self.model,
            "finish_reasons": [self.stop_reason] if self.stop_reason else [],
            **anthropic_usage(self.usage),
        }


class _ObservedManager:
    """Stands in for (Async)MessageStreamManager: hands out the real MessageStream, watching its raw events."""

    def __init__(self, manager: Any, call: LLMCall) -> None:
        self._manager = manager
        self._call = call
        self._watcher = MessageStreamWatcher(call)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    def __enter__(self) -> Any:
        try:
            stream = self._manager.__enter__()
        except BaseException as exc:
            safely(self._call.fail, exc)
            raise
        safely(observe_stream, stream._raw_stream, self._watcher)
        return stream

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._settle(exc)
        return self._manager.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Any:
        try:
            stream = await self._manager.__aenter__()
        except BaseException as exc:
            safely(self._call.fail, exc)
            raise
        safely(observe_async_stream, stream._raw_stream, self._watcher)
        return stream

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._settle(exc)
        return await self._manager.__aexit__(exc_type, exc, tb)

    def _settle(self, exc: BaseException | None) -> None:
        # Left the block before the stream ended (or it raised): record what was seen; no-op if already recorded.
        if self._call._done:
            return
        if exc is not None:
            safely(self._watcher.fail, exc)
        else:
            safely(self._watcher.finish, True)
