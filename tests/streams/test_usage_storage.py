"""Zero usage and unknown usage survive the store, and token sums at the per-span bound stay exact."""

from __future__ import annotations

import time
from decimal import Decimal

from llmscope.storage import Store
from schemas.rollup import ROLLUP_MINUTE
from schemas.span import Span
from schemas.usage import MAX_TOKENS
from streams.stages.enrich import EnrichmentPolicy, enrich
from streams.stages.normalise import normalise
from tests.otlp_factory import kv, llm_span, request_of
from tests.streams.test_compaction import store_spans

MINUTE_NS = 60 * 10**9


def _stored(store: Store, tenant: str, spans: list[Span]) -> dict[str, dict]:
    for span in spans:
        enrich(span, EnrichmentPolicy())  # sets the cost, as the worker does
    store_spans(store, spans)
    df = store.query(
        f"SELECT name, usage_reported, input_tokens, cost_usd FROM {store.database}.spans FINAL"
        " WHERE tenant_id = {t:String}",
        {"t": tenant},
    )
    return {r.pop("name"): r for r in df.to_dicts()}


def _minute(store: Store, tenant: str) -> dict:
    df = store.query(
        f"""SELECT sum(requests) AS requests, sum(cost_known) AS cost_known, sum(input_tokens) AS input_tokens,
                   sum(output_tokens) AS output_tokens, sum(cached_input_tokens) AS cached_input_tokens,
                   sum(reasoning_tokens) AS reasoning_tokens, sum(cost_usd) AS cost_usd
            FROM {store.database}.{ROLLUP_MINUTE} FINAL WHERE tenant_id = {{t:String}}""",
        {"t": tenant},
    )
    return df.to_dicts()[0]


def test_explicit_zero_is_stored_as_reported_with_cost_zero_and_missing_usage_as_unknown(store: Store) -> None:
    tenant, start = "usage-zero", (time.time_ns() - 10 * MINUTE_NS) // MINUTE_NS * MINUTE_NS
    zero = llm_span(name="cached answer", input_tokens=0, output_tokens=0, start_ns=start)
    normal = llm_span(name="normal", input_tokens=1_000_000, output_tokens=0, start_ns=start)
    unknown = llm_span(name="interrupted", start_ns=start)
    unknown.ClearField("attributes")  # no usage attribute at all
    unknown.attributes.extend([kv("gen_ai.provider.name", "openai"), kv("gen_ai.request.model", "gpt-4o")])
    rows = _stored(store, tenant, normalise(request_of([zero, normal, unknown]), tenant))
    assert rows == {
        "cached answer": {"usage_reported": 1, "input_tokens": 0, "cost_usd": Decimal(0)},
        "normal": {"usage_reported": 1, "input_tokens": 1_000_000, "cost_usd": Decimal("2.5")},
        "interrupted": {"usage_reported": 0, "input_tokens": 0, "cost_usd": None},
    }
    # Rollups are unchanged by the flag: tokens sum as before; the zero span's cost is known, and $0.
    minute = _minute(store, tenant)
    assert (minute["requests"], minute["cost_known"], minute["input_tokens"]) == (3, 2, 1_000_000)
    assert minute["cost_usd"] == Decimal("2.5")


def test_token_sums_of_spans_at_the_bound_are_exact(store: Store) -> None:
    tenant, start = "usage-bound", (time.time_ns() - 10 * MINUTE_NS) // MINUTE_NS * MINUTE_NS
    at_bound = {"gen_ai.usage.cache_read.input_tokens": MAX_TOKENS, "gen_ai.usage.reasoning.output_tokens": MAX_TOKENS}
    spans = [llm_span(name=f"s{i}", input_tokens=MAX_TOKENS, output_tokens=MAX_TOKENS, start_ns=start, extra=at_bound)
             for i in range(5)]  # fmt: skip
    _stored(store, tenant, normalise(request_of(spans), tenant))
    minute = _minute(store, tenant)
    for column in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens"):
        assert minute[column] == 5 * MAX_TOKENS


def test_uint64_token_sums_cannot_wrap_below_four_billion_spans_at_the_bound() -> None:
    """The proof in schemas/usage.py: every stored count is at most MAX_TOKENS, so a UInt64 sum over
    n spans is at most n * MAX_TOKENS, which stays below 2**64 for every n up to 2**32 + 1."""
    assert (2**32 + 1) * MAX_TOKENS < 2**64 <= (2**32 + 2) * MAX_TOKENS
