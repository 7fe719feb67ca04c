"""wrap_openai: chat completions, Responses and embeddings, sync or async, streamed or not."""

from __future__ import annotations

from typing import Any

from llmscope_sdk._events import field, given, reported, tokens
from llmscope_sdk.client import Client
from llmscope_sdk.integrations._call import LLMCall, StreamWatcher, instrument, log


def wrap_openai(client: Any, *, llmscope_client: Client | None = None, provider: str = "openai") -> Any:
    """Instrument an OpenAI/AsyncOpenAI (or Azure) client in place and return it; calling twice is harmless."""

    def chat_start(kwargs: dict[str, Any]) -> LLMCall:
        call = LLMCall(llmscope_client, provider, "chat", kwargs.get("model"), kwargs.get("messages"))
        call.hide_usage_chunk = False  # type: ignore[attr-defined]
        if kwargs.get("stream") is True and call.client.enabled:
            options = kwargs.get("stream_options")
            # Usage only arrives on streams that ask for it; ask, and hide the extra chunk the caller didn't ask for.
            if not given(options):
                kwargs["stream_options"] = {"include_usage": True}
                call.hide_usage_chunk = True  # type: ignore[attr-defined]
            elif isinstance(options, dict) and "include_usage" not in options:
                kwargs["stream_options"] = {**options, "include_usage": True}
                call.hide_usage_chunk = True  # type: ignore[attr-defined]
        return call

    def responses_start(kwargs: dict[str, Any]) -> LLMCall:
        return LLMCall(llmscope_client, provider, "chat", kwargs.get("model"), kwargs.get("input"))

    def embeddings_start(kwargs: dict[str, Any]) -> LLMCall:
        call = LLMCall(llmscope_client, provider, "embeddings", kwargs.get("model"), None)
        text = kwargs.get("input")
        if isinstance(text, str):  # token-id lists and batches of strings are not worth storing as "content"
            call.event["input"] = text if call.client.capture_content else None
        return call

    try:
        instrument(client.chat.completions, "create", chat_start, chat_result, ChatStreamWatcher)
        if hasattr(client, "responses"):
            instrument(client.responses, "create", responses_start, responses_result, ResponsesStreamWatcher)
        instrument(client.embeddings, "create", embeddings_start, embeddings_result, StreamWatcher)
    except Exception:
        log.warning("llmscope: could not instrument this OpenAI client", exc_info=True)
    return client


def chat_usage(usage: Any) -> dict[str, int]:
    """prompt_tokens already includes cached_tokens; reasoning_tokens is part of completion_tokens."""
    return reported(usage, tokens(
        field(usage, "prompt_tokens"),
        field(usage, "completion_tokens"),
        field(usage, "prompt_tokens_details", "cached_tokens"),
        field(usage, "prompt_tokens_details", "cache_write_tokens"),
        field(usage, "completion_tokens_details", "reasoning_tokens"),
    ))


def responses_usage(usage: Any) -> dict[str, int]:
    return reported(usage, tokens(
        field(usage, "input_tokens"),
        field(usage, "output_tokens"),
        field(usage, "input_tokens_details", "cached_tokens"),
        field(usage, "input_tokens_details", "cache_write_tokens"),
        field(usage, "output_tokens_details", "reasoning_tokens"),
    ))


def chat_result(call: LLMCall, result: Any) -> None:
    choices = field(result, "choices") or []
    call.output([field(c, "message") for c in choices if field(c, "message") is not None])
    call.finish(
        response_model=field(result, "model"),
        finish_reasons=[r for r in (field(c, "finish_reason") for c in choices) if isinstance(r, str)],
        **chat_usage(field(result, "usage")),
    )


def responses_result(call: LLMCall, result: Any) -> None:
    text = field(result, "output_text")
    call.output(text if isinstance(text, str) else field(result, "output"))
    fields: dict[str, Any] = {"response_model": field(result, "model"), **responses_usage(field(result, "usage"))}
    status = field(result, "status")
    reason = field(result, "incomplete_details", "reason")
    fields["finish_reasons"] = [r for r in (status, reason) if isinstance(r, str)]
    if status == "failed":
        error = field(result, "error")
        fields["status"] = "error"
        fields["error"] = {
            "type": str(field(error, "code") or "response_failed"),
            "message": str(field(error, "message") or ""),
        }
    call.finish(**fields)


def embeddings_result(call: LLMCall, result: Any) -> None:
    usage = field(result, "usage")
    call.finish(response_model=field(result, "model"), **reported(usage, tokens(field(usage, "prompt_tokens"))))


class ChatStreamWatcher(StreamWatcher):
    def __init__(self, call: LLMCall) -> None:
        super().__init__(call)
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.text: dict[int, list[str]] = {}
        self.reasons: dict[int, str] = {}

    def on_item(self, chunk: Any) -> None:
        self.model = field(chunk, "model") or self.model
        if field(chunk, "usage") is not None:
            self.usage = chat_usage(field(chunk, "usage"))
        for choice in field(chunk, "choices") or []:
            index = field(choice, "index") or 0
            piece = field(choice, "delta", "content")
            if isinstance(piece, str):
                self.text.setdefault(index, []).append(piece)
            if isinstance(reason := field(choice, "finish_reason"), str):
                self.reasons[index] = reason

    def hide(self, chunk: Any) -> bool:
        injected = getattr(self.call, "hide_usage_chunk", False)
        return bool(injected and not field(chunk, "choices") and field(chunk, "usage") is not None)

    def _fields(self) -> dict[str, Any]:
        self.call.output([{"role": "assistant", "content": "".join(self.text[i])} for i in sorted(self.text)])
        return {
            "response_model": self.model,
            "finish_reasons": [self.reasons[i] for i in sorted(self.reasons)],
            **self.usage,
        }


class ResponsesStreamWatcher(StreamWatcher):
    """Usage is on the terminal event's `response`; everything else is read from it too."""

    def __init__(self, call: LLMCall) -> None:
        super().__init__(call)
        self.final: Any = None
        self.model: str | None = None

    def on_item(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "response.created":
            self.model = field(event, "response", "model")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = field(event, "response")

    def finish(self, interrupted: bool) -> None:
        if self.final is not None:
            responses_result(self.call, self.final)
        else:
            self.call.finish(response_model=self.model, metadata={"stream.interrupted": True} if interrupted else None)

    def fail(self, exc: BaseException) -> None:
        self.call.fail(exc, response_model=self.model)
