"""LLMScope SDK: `init()`, wrap your OpenAI/Anthropic client, and optionally group calls with `span`/`@trace`."""

from llmscope_sdk._state import emit, flush, get_client, init, shutdown
from llmscope_sdk._transport import RetryPolicy
from llmscope_sdk.client import Client, __version__
from llmscope_sdk.context import SpanContext, SpanScope, current_span, span, trace
from llmscope_sdk.integrations._anthropic import wrap_anthropic
from llmscope_sdk.integrations._openai import wrap_openai

__all__ = [
    "Client",
    "RetryPolicy",
    "SpanContext",
    "SpanScope",
    "__version__",
    "current_span",
    "emit",
    "flush",
    "get_client",
    "init",
    "shutdown",
    "span",
    "trace",
    "wrap_anthropic",
    "wrap_openai",
]
