"""The token-usage contract both edges share: which span attributes carry a token count, how one is
read, and the largest count that is plausible for one span.

The ingest rejects a span whose token attribute states more than MAX_TOKENS, the SDK event schema
caps every token field at MAX_TOKENS, and the normaliser never stores more: so every token column
of every stored span is at most MAX_TOKENS.

Why no token sum can wrap: every sum of them (rollups, queries) is taken as Decimal(38, 0), which
holds the sum of 2**32 * 10**18 such counts (schemas/rollup.py, sum_sql); the bound keeps each span
plausible, so one garbage count cannot dominate the totals it joins.
"""

from __future__ import annotations

import math

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# 4,294,967,295: a few hundred times the largest context window of any model today, and the cap the
# SDK event schema has always had. A larger count is a unit mistake or garbage, not usage.
MAX_TOKENS = 2**32 - 1

# Attributes each token class is read from, in precedence order: the OTel GenAI conventions (newest
# name first), their deprecated and OpenLLMetry spellings, then OpenInference. What each one means,
# and which instrumentations emit it, is the table in README.md ("Which attribute feeds which field").
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_TOKENS = (
    "gen_ai.usage.cache_write.input_tokens",  # semantic-conventions-genai, after the rename (#440)
    "gen_ai.usage.cache_creation.input_tokens",  # semconv core <= 1.40 and the instrumentations today
    "gen_ai.usage.cache_creation_input_tokens",  # OpenLLMetry before 0.5
    "llm.token_count.prompt_details.cache_write",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",  # OpenLLMetry
    "llm.token_count.completion_details.reasoning",
)
TOKEN_COUNT_KEYS = frozenset(
    (*INPUT_TOKENS, *OUTPUT_TOKENS, *CACHE_READ_TOKENS, *CACHE_WRITE_TOKENS, *REASONING_TOKENS)
)


def token_count(value: AnyValue) -> int | None:
    """The count an attribute value states (an int, a double or a numeric string), or None when it
    states none: another type, text that is not a number, a negative or non-finite number. A count
    above MAX_TOKENS is returned as is: the caller decides whether to refuse it."""
    which = value.WhichOneof("value")
    number: float | int
    if which == "int_value":
        number = value.int_value
    elif which == "double_value":
        number = value.double_value
    elif which == "string_value":
        text = value.string_value.strip()
        if len(text) > 40:  # no count has 40 digits; int() of a huge string is slow
            return None
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
    else:
        return None
    if isinstance(number, float):
        if not math.isfinite(number):
            return None
        number = int(number)
    return number if number >= 0 else None


def implausible_count(key: str, value: AnyValue) -> str | None:
    """Why the ingest refuses this attribute, or None: a token count above MAX_TOKENS."""
    if key in TOKEN_COUNT_KEYS and (n := token_count(value)) is not None and n > MAX_TOKENS:
        return f"token count over {MAX_TOKENS} in {key}"
    return None
