"""LLMScope SDK: `init()`, wrap your OpenAI/Anthropic client, and optionally group calls with `span`/`@trace`."""

from llmscope_sdk._state import emit, flush, get_client, init, shutdown, within_budget
from llmscope_sdk._transport import RetryPolicy
from llmscope_sdk.budgets import BudgetCheckFailed, BudgetStatus
from llmscope_sdk.client import Client, __version__
from llmscope_sdk.context import SpanContext, SpanScope, current_span, span, trace
from llmscope_sdk.integrations._anthropic import wrap_anthropic
from llmscope_sdk.integrations._openai import wrap_openai

__all__ = [
    "BudgetCheckFailed",
    "BudgetStatus",
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
    "within_budget",
    "wrap_anthropic",
    "wrap_openai",
]
