"""Cost per token class against hand-computed figures from genai-prices' bundled table (0.2.3); zero usage
costs $0, usage never reported costs nothing known."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1 import trace_pb2

from schemas.event import LLMEvent
from streams.stages.sdk_events import event_to_span
from schemas.span import Span
from schemas.tenant_settings import OVERRIDE_SOURCE, PRICE_SOURCE, OverrideKey, PriceOverride
from streams.stages import cost
from streams.stages.cost import CostResult, cache_info, index_overrides
from streams.stages.model_names import resolve_model
from streams.stages.normalise import normalise
from tests.otlp_factory import kv, request_of

D = Decimal
M = 1_000_000  # prices are USD per million tokens


def compute_cost(span: Span, overrides: dict[OverrideKey, PriceOverride] | None = None) -> CostResult:
    """The cost stage as enrichment calls it, with the span's model resolved once."""
    return cost.compute_cost(span, resolve_model(span.model, span.provider) if span.model else None, overrides)


def _ns(*when: int) -> int:
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 1_000_000_000


def _span(provider: str, model: str, at: int = 0, **tokens: int) -> Span:
    start = at or _ns(2025, 1, 15, 12)
    return Span(
        tenant_id="t1", trace_id="a" * 32, span_id="b" * 16, parent_span_id="", name="chat", kind="client",
        service_name="svc", start_time_ns=start, end_time_ns=start + 1_000_000_000,
        provider=provider, request_model=model, **tokens,
    )  # fmt: skip


def test_price_source_names_the_bundled_table() -> None:
    assert PRICE_SOURCE == f"genai-prices@{genai_prices.__version__}" == "genai-prices@0.2.3"


def test_openai_gpt_4o_every_token_class() -> None:
    # openai gpt-4o (matches gpt-4o-2024-08-06): input $2.50, cache read $1.25, output $10 per MTok;
    # no cache-write or reasoning price, so cache writes bill as input and reasoning as output.
    r = compute_cost(
        _span("openai", "gpt-4o-2024-08-06", input_tokens=10_000, cached_input_tokens=4_000,
              cache_write_tokens=1_000, output_tokens=2_000, reasoning_tokens=500)
    )  # fmt: skip
    assert r.breakdown == {
        "input": D(5_000) * D("2.5") / M,  # 10_000 - 4_000 - 1_000 uncached = 0.0125
        "cached_input": D(4_000) * D("1.25") / M,  # 0.005
        "cache_write": D(1_000) * D("2.5") / M,  # 0.0025
        "output": D(1_500) * D(10) / M,  # 2_000 - 500 reasoning = 0.015
        "reasoning": D(500) * D(10) / M,  # 0.005
    }
    assert r.cost_usd == D("0.04")
    assert isinstance(r.cost_usd, Decimal)
    assert (r.price_source, r.model_ref) == (PRICE_SOURCE, "gpt-4o")


def test_anthropic_claude_3_5_sonnet_with_semconv_totals() -> None:
    # anthropic claude-3-5-sonnet: input $3, cache read $0.30, cache write $3.75, output $15 per MTok.
    # Anthropic's own usage said input_tokens=1_000, cache_read=20_000, cache_creation=5_000; the
    # normaliser sums them, so the span carries the semconv total 26_000.
    r = compute_cost(
        _span("anthropic", "claude-3-5-sonnet-20241022", input_tokens=26_000, cached_input_tokens=20_000,
              cache_write_tokens=5_000, output_tokens=800)
    )  # fmt: skip
    assert r.breakdown["input"] == D("0.003")  # 1_000 * 3 / 1e6
    assert r.breakdown["cached_input"] == D("0.006")  # 20_000 * 0.3 / 1e6
    assert r.breakdown["cache_write"] == D("0.01875")  # 5_000 * 3.75 / 1e6
    assert r.breakdown["output"] == D("0.012")  # 800 * 15 / 1e6
    assert r.breakdown["reasoning"] == 0
    assert r.cost_usd == D("0.03975")


@pytest.mark.parametrize(
    ("input_tokens", "expected"),
    [
        # google gemini-1.5-pro: input $1.25 / output $5 per MTok, both $2.50 / $10 once input > 128k
        (100_000, D(100_000) * D("1.25") / M + D(1_000) * D(5) / M),  # 0.125 + 0.005
        (150_000, D(150_000) * D("2.5") / M + D(1_000) * D(10) / M),  # 0.375 + 0.01: every token repriced
    ],
)
def test_google_gemini_1_5_pro_tiers(input_tokens: int, expected: Decimal) -> None:
    r = compute_cost(
        _span("gcp.vertex_ai", "models/gemini-1.5-pro-002", input_tokens=input_tokens, output_tokens=1_000)
    )
    assert r.cost_usd == expected
    assert r.model_ref == "gemini-1.5-pro"


def test_google_gemini_2_5_pro_cache_and_reasoning() -> None:
    # google gemini-2.5-pro (≤200k input): input $1.25, cache read $0.125, output $10 per MTok
    r = compute_cost(
        _span("gcp.gemini", "gemini-2.5-pro", input_tokens=50_000, cached_input_tokens=20_000,
              output_tokens=2_000, reasoning_tokens=1_500)
    )  # fmt: skip
    assert r.breakdown == {
        "input": D("0.0375"),  # 30_000 * 1.25 / 1e6
        "cached_input": D("0.0025"),  # 20_000 * 0.125 / 1e6
        "cache_write": D(0),
        "output": D("0.005"),  # 500 * 10 / 1e6
        "reasoning": D("0.015"),  # 1_500 * 10 / 1e6
    }
    assert r.cost_usd == D("0.06")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # openai o3 until 2025-06-10: input $10, output $40 per MTok → 1M * 10 + 100k * 40
        (_ns(2025, 6, 9, 23, 59), D(10) + D(100_000) * D(40) / M),
        # from 2025-06-10: input $2, output $8 per MTok
        (_ns(2025, 6, 10, 0, 1), D(2) + D(100_000) * D(8) / M),
    ],
)
def test_time_dependent_price_uses_span_start(when: int, expected: Decimal) -> None:
    r = compute_cost(_span("openai", "o3", at=when, input_tokens=1_000_000, output_tokens=100_000))
    assert r.cost_usd == expected


def test_time_dependent_tiers_anthropic_sonnet_4_6() -> None:
    # claude-sonnet-4-6: before 2026-03-13 input above 200k costs $6/MTok (else $3); from then on $3 flat.
    before = compute_cost(_span("anthropic", "claude-sonnet-4-6", at=_ns(2026, 3, 12), input_tokens=250_000))
    after = compute_cost(_span("anthropic", "claude-sonnet-4-6", at=_ns(2026, 3, 13), input_tokens=250_000))
    assert before.cost_usd == D(250_000) * D(6) / M == D("1.5")
    assert after.cost_usd == D(250_000) * D(3) / M == D("0.75")


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        (12, D("0.27") + D("1.1")),  # deepseek-chat 00:30–16:30 UTC: $0.27 in / $1.10 out per MTok
        (20, D("0.135") + D("0.55")),  # off-peak: $0.135 / $0.55
    ],
)
def test_time_of_day_price_is_not_cached_per_day(hour: int, expected: Decimal) -> None:
    r = compute_cost(_span("deepseek", "deepseek-chat", at=_ns(2025, 3, 1, hour), input_tokens=M, output_tokens=M))
    assert r.cost_usd == expected


def test_separate_reasoning_price_and_per_request_fee() -> None:
    # perplexity sonar-deep-research: input $2, output $8, reasoning $3 per MTok
    deep = compute_cost(
        _span("perplexity", "sonar-deep-research", input_tokens=1_000, output_tokens=10_000, reasoning_tokens=6_000)
    )
    assert deep.breakdown["reasoning"] == D(6_000) * D(3) / M
    assert deep.breakdown["output"] == D(4_000) * D(8) / M
    assert deep.cost_usd == D("0.002") + D("0.032") + D("0.018")
    # perplexity sonar: $1 / $1 per MTok plus $12 per thousand requests
    sonar = compute_cost(_span("perplexity", "sonar", input_tokens=1_000, output_tokens=1_000))
    assert sonar.breakdown["requests"] == D("0.012")
    assert sonar.cost_usd == D("0.014")


@pytest.mark.parametrize(
    ("provider", "model", "model_ref"),
    [
        ("azure.ai.openai", "gpt-4o", "gpt-4o"),  # Azure falls back to OpenAI's prices
        (
            "aws.bedrock",
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "regional.anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        ("", "openai/gpt-4o", "gpt-4o"),  # provider inferred from the prefix
    ],
)
def test_aliases_and_inferred_providers_price(provider: str, model: str, model_ref: str) -> None:
    r = compute_cost(_span(provider, model, input_tokens=1_000_000))
    assert r.model_ref == model_ref
    assert r.cost_usd in (D("2.5"), D(3))  # gpt-4o $2.50 / claude-3-5-sonnet $3 per MTok input


@pytest.mark.parametrize(
    ("span", "note"),
    [
        (_span("openai", "gpt-9-imaginary", input_tokens=10), "no price for model"),
        (_span("ollama", "gpt-4o", input_tokens=10), "no price for model"),  # self-hosted: no table price
        (_span("openai", "", input_tokens=10), "no model"),
        (_span("openai", "gpt-4o"), "no usage"),  # usage never reported is unknown, not free
        (
            _span("anthropic", "claude-3-5-sonnet", input_tokens=10, cached_input_tokens=20),
            "cache/reasoning tokens exceed their totals",
        ),
        (_span("openai", "o3", output_tokens=10, reasoning_tokens=11), "cache/reasoning tokens exceed their totals"),
    ],
)
def test_unknown_cost_is_none_never_zero(span: Span, note: str) -> None:
    r = compute_cost(span)
    assert r.cost_usd is None
    assert r.price_source == ""
    assert r.note == note


def test_override_wins_and_falls_back_for_absent_classes() -> None:
    overrides = index_overrides(
        [
            PriceOverride(model="my-llama-70b", input_mtok=D("0.5"), output_mtok=D("1.5")),
            PriceOverride(
                model="gpt-4o", provider="openai", input_mtok=D(1), output_mtok=D(2), cached_input_mtok=D("0.1")
            ),
        ]
    )
    own = compute_cost(
        _span("vllm", "my-llama-70b", input_tokens=3 * M, cached_input_tokens=M, cache_write_tokens=M,
              output_tokens=M, reasoning_tokens=M // 2),
        overrides,
    )  # fmt: skip
    # Absent cache prices fall back to input ($0.50), absent reasoning price to output ($1.50).
    assert own.breakdown == {
        "input": D("0.5"), "cached_input": D("0.5"), "cache_write": D("0.5"),
        "output": D("0.75"), "reasoning": D("0.75"),
    }  # fmt: skip
    assert (own.cost_usd, own.price_source, own.model_ref) == (D(3), OVERRIDE_SOURCE, "my-llama-70b")
    # A (provider, model) override beats the table, also for a dated version of the model.
    table = compute_cost(
        _span("openai", "gpt-4o-2024-08-06", input_tokens=2 * M, cached_input_tokens=M, output_tokens=M), overrides
    )
    assert (table.cost_usd, table.price_source) == (D(1) + D("0.1") + D(2), OVERRIDE_SOURCE)
    # ... but only for that provider: Azure's gpt-4o still prices from the table.
    azure = compute_cost(_span("azure", "gpt-4o", input_tokens=M), overrides)
    assert (azure.cost_usd, azure.price_source) == (D("2.5"), PRICE_SOURCE)


def test_provider_specific_override_beats_any_provider_override() -> None:
    overrides = index_overrides(
        [
            PriceOverride(model="claude-3-5-sonnet", input_mtok=D(1), output_mtok=D(1)),
            PriceOverride(model="claude-3-5-sonnet", provider="aws.bedrock", input_mtok=D(2), output_mtok=D(2)),
        ]
    )
    bedrock = compute_cost(_span("aws", "anthropic.claude-3-5-sonnet-20241022-v2:0", input_tokens=M), overrides)
    direct = compute_cost(_span("anthropic", "claude-3-5-sonnet-20241022", input_tokens=M), overrides)
    assert (bedrock.cost_usd, direct.cost_usd) == (D(2), D(1))


def test_exact_for_huge_counts() -> None:
    r = compute_cost(_span("openai", "gpt-4o", input_tokens=123_456_789_123))
    assert r.cost_usd == D("308641.9728075")  # 123_456_789_123 * 2.5 / 1e6, not a float approximation


def test_a_cost_the_store_cannot_hold_is_unknown() -> None:
    # The largest price the prices API accepts, times the most tokens a span may state: far beyond
    # the spans table's Decimal(38, 12), whose insert would then fail on every retry.
    price = D("9" * 26 + "." + "9" * 12)
    overrides = index_overrides([PriceOverride(model="gpt-4o", input_mtok=price, output_mtok=price)])
    huge = compute_cost(_span("openai", "gpt-4o", input_tokens=2**32 - 1, output_tokens=2**32 - 1), overrides)
    assert (huge.cost_usd, huge.price_source, huge.note) == (None, "", "cost too large for the store")
    fits = compute_cost(_span("openai", "gpt-4o", input_tokens=M), overrides)
    assert fits.cost_usd == price


def test_lookup_is_cached_per_provider_model_day() -> None:
    span = _span("openai", "gpt-4o-mini", at=_ns(2025, 2, 2, 1), input_tokens=10)
    compute_cost(span)
    before = cache_info()["rates"]
    span.start_time_ns += 3_600 * 1_000_000_000  # same UTC day: a cache hit
    compute_cost(span)
    hits = lambda info: int(info.split("hits=")[1].split(",")[0])
    assert hits(cache_info()["rates"]) == hits(before) + 1


_MODELS = [
    ("openai", "gpt-4o-2024-08-06"), ("openai", "o3"), ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-sonnet-4-6"), ("gcp.gemini", "gemini-2.5-pro"), ("deepseek", "deepseek-chat"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"), ("azure.ai.openai", "gpt-4o"),
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    model=st.sampled_from(_MODELS),
    uncached=st.integers(0, 400_000), cached=st.integers(0, 200_000), written=st.integers(0, 50_000),
    visible=st.integers(0, 50_000), reasoning=st.integers(0, 50_000),
    seconds=st.integers(1_700_000_000, 1_800_000_000),
)  # fmt: skip
def test_matches_genai_prices_calc_price(
    model: tuple[str, str], uncached: int, cached: int, written: int, visible: int, reasoning: int, seconds: int
) -> None:
    """Our per-class arithmetic (kept for the breakdown and speed) equals genai-prices' own total."""
    provider, name = model
    span = _span(provider, name, at=seconds * 1_000_000_000, input_tokens=uncached + cached + written + 1,
                 cached_input_tokens=cached, cache_write_tokens=written, output_tokens=visible + reasoning,
                 reasoning_tokens=reasoning)  # fmt: skip
    identity = resolve_model(name, provider)
    usage = genai_prices.Usage(
        input_tokens=span.input_tokens, cache_read_tokens=cached, cache_write_tokens=written,
        output_tokens=span.output_tokens, output_reasoning_tokens=reasoning,
    )  # fmt: skip
    expected = genai_prices.calc_price(
        usage, identity.ref, provider_id=identity.provider, genai_request_timestamp=datetime.fromtimestamp(seconds, UTC)
    ).total_price
    assert compute_cost(span).cost_usd == expected


# Zero is not unknown: spans as producers send them, through the real normaliser and event_to_span.


def _normalised(attrs: dict[str, object]) -> Span:
    (span,) = normalise(request_of([_otlp_span(attrs)]), "t1")
    return span


def _otlp_span(attrs: dict[str, object]) -> trace_pb2.Span:
    start = _ns(2025, 1, 15, 12)
    return trace_pb2.Span(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=start,
        end_time_unix_nano=start + 10**9, attributes=[kv(k, v) for k, v in attrs.items()],
    )  # fmt: skip


_GPT_4O = {"gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}


@pytest.mark.parametrize(
    "attrs",
    [
        {**_GPT_4O, "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0},  # a cached answer
        {**_GPT_4O, "gen_ai.usage.output_tokens": 0},  # only one side stated, as 0: still stated
        {**_GPT_4O, "gen_ai.usage.prompt_tokens": 0, "gen_ai.usage.completion_tokens": 0},  # deprecated names
        {"llm.provider": "openai", "llm.model_name": "gpt-4o", "openinference.span.kind": "LLM",
         "llm.token_count.prompt": 0, "llm.token_count.completion": 0},  # OpenInference
    ],
)  # fmt: skip
def test_explicit_zero_usage_through_the_normaliser_costs_zero(attrs: dict[str, object]) -> None:
    span = _normalised(attrs)
    assert span.usage_reported and span.has_usage
    r = compute_cost(span)
    assert (r.cost_usd, r.price_source, r.model_ref) == (D(0), PRICE_SOURCE, "gpt-4o")
    assert r.breakdown == dict.fromkeys(("input", "cached_input", "cache_write", "output", "reasoning"), D(0))


@pytest.mark.parametrize(
    "attrs",
    [
        _GPT_4O,  # no usage attribute at all (an interrupted stream)
        {**_GPT_4O, "gen_ai.usage.input_tokens": "n/a", "gen_ai.usage.output_tokens": -1},  # not counts
        {**_GPT_4O, "gen_ai.usage.cache_read.input_tokens": 0},  # a part alone states no usage
        {**_GPT_4O, "gen_ai.usage.input_tokens": 2**40},  # above MAX_TOKENS: refused at the ingest
    ],
)
def test_span_without_usage_through_the_normaliser_has_unknown_cost(attrs: dict[str, object]) -> None:
    span = _normalised(attrs)
    assert not span.usage_reported and not span.has_usage
    r = compute_cost(span)
    assert (r.cost_usd, r.price_source, r.note) == (None, "", "no usage")


def test_explicit_zero_usage_of_an_unpriced_model_is_still_unknown() -> None:
    span = _normalised({"gen_ai.provider.name": "acme", "gen_ai.request.model": "acme-frontier-9000",
                        "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0})  # fmt: skip
    assert span.usage_reported
    assert (compute_cost(span).cost_usd, compute_cost(span).note) == (None, "no price for model")


def test_explicit_zero_usage_still_pays_a_per_request_fee() -> None:
    # perplexity sonar: $1 / $1 per MTok plus $12 per thousand requests; zero tokens, one request.
    span = _normalised({"gen_ai.provider.name": "perplexity", "gen_ai.request.model": "sonar",
                        "gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0})  # fmt: skip
    assert compute_cost(span).cost_usd == D("0.012")


def _event(**fields: object) -> Span:
    event = LLMEvent.model_validate(
        {"id": "ev-1", "timestamp": _ns(2025, 1, 15, 12), "provider": "openai", "model": "gpt-4o", **fields}
    )
    return event_to_span(event, "t1")


@pytest.mark.parametrize(
    ("fields", "cost"),
    [
        ({"usage_reported": True}, D(0)),  # stated as zero: $0
        ({"usage_reported": True, "input_tokens": 0, "output_tokens": 0}, D(0)),
        ({}, None),  # no usage and no flag: unknown, as events always were
        ({"input_tokens": 0, "output_tokens": 0}, None),  # older SDKs send zeros when usage never arrived
        ({"usage_reported": False}, None),  # stated as unknown
        ({"input_tokens": 1_000_000, "output_tokens": 100_000}, D("3.5")),  # gpt-4o: $2.50 + $10 per MTok
        ({"usage_reported": True, "input_tokens": 1_000_000}, D("2.5")),
    ],
)
def test_sdk_event_usage_through_event_to_span(fields: dict[str, object], cost: Decimal | None) -> None:
    span = _event(**fields)
    assert span.has_usage is (cost is not None)
    assert compute_cost(span).cost_usd == cost
