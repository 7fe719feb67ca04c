"""The enrichment stage end to end on single spans."""

from __future__ import annotations

from decimal import Decimal

from schemas.span import Span
from schemas.tenant_settings import OVERRIDE_SOURCE, PRICE_SOURCE, PiiPolicy, PriceOverride
from streams.stages.cost import index_overrides
from streams.stages.enrich import Enrichment, EnrichmentPolicy, enrich

JAN_2025 = 1_736_942_400 * 1_000_000_000  # 2025-01-15 12:00 UTC


def _span(provider: str, request_model: str, response_model: str = "", **fields: object) -> Span:
    return Span(
        tenant_id="t1", trace_id="a" * 32, span_id="b" * 16, parent_span_id="", name="chat", kind="client",
        service_name="svc", start_time_ns=JAN_2025, end_time_ns=JAN_2025 + 10**9,
        provider=provider, request_model=request_model, response_model=response_model, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_openai_span_gets_names_cost_and_redaction() -> None:
    span = _span(
        "openai", "gpt-4o", "gpt-4o-2024-08-06", input_tokens=10_000, cached_input_tokens=4_000, output_tokens=1_000,
        attributes={"gen_ai.input.messages": '[{"role":"user","content":"I am bob@example.org"}]'},
    )  # fmt: skip
    result = enrich(span, EnrichmentPolicy(pii=PiiPolicy.MASK))
    assert result == Enrichment(price_source=PRICE_SOURCE, model_version="2024-08-06", pii_counts={"email": 1})
    assert (span.provider, span.request_model, span.response_model) == ("openai", "gpt-4o", "gpt-4o")
    assert span.attributes["llmscope.model.raw"] == "gpt-4o-2024-08-06"
    assert span.attributes["llmscope.model.version"] == "2024-08-06"
    assert span.attributes["llmscope.request_model.raw"] == "gpt-4o"
    # gpt-4o: 6_000 * $2.50 + 4_000 * $1.25 + 1_000 * $10 per MTok
    assert span.cost_usd == Decimal("0.015") + Decimal("0.005") + Decimal("0.01")
    assert "bob@example.org" not in span.attributes["gen_ai.input.messages"]


def test_bedrock_anthropic_span_is_priced_from_the_raw_model_id() -> None:
    span = _span("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", input_tokens=1_000_000)
    result = enrich(span, EnrichmentPolicy())
    assert (span.provider, span.request_model, span.response_model) == ("aws", "claude-3-5-sonnet", "")
    assert result.model_version == "20241022-v2:0"
    assert span.cost_usd == Decimal(3)  # AWS claude-3-5-sonnet v2: $3 per MTok input


def test_provider_is_inferred_when_missing() -> None:
    span = _span("", "claude-3-5-haiku-20241022", input_tokens=1_000_000)
    enrich(span, EnrichmentPolicy())
    assert (span.provider, span.request_model) == ("anthropic", "claude-3-5-haiku")
    assert span.cost_usd == Decimal("0.8")  # claude-3-5-haiku: $0.80 per MTok input


def test_enrich_is_idempotent() -> None:
    span = _span("azure.ai.openai", "gpt-4o-2024-11-20", input_tokens=2_000, output_tokens=100)
    first = enrich(span, EnrichmentPolicy())
    snapshot = (span.provider, span.request_model, dict(span.attributes), span.cost_usd)
    second = enrich(span, EnrichmentPolicy())
    assert first == second
    assert (span.provider, span.request_model, dict(span.attributes), span.cost_usd) == snapshot
    assert span.provider == "azure"
    assert span.cost_usd == Decimal("0.006")  # Azure gpt-4o bills OpenAI's $2.50 in / $10 out per MTok


def test_tenant_override_sets_price_source() -> None:
    overrides = index_overrides(
        [PriceOverride(model="llama-3.1-8b", input_mtok=Decimal("0.1"), output_mtok=Decimal("0.2"))]
    )
    span = _span("vllm", "llama-3.1-8b", input_tokens=1_000_000, output_tokens=1_000_000)
    result = enrich(span, EnrichmentPolicy(price_overrides=overrides))
    assert (result.price_source, span.cost_usd) == (OVERRIDE_SOURCE, Decimal("0.3"))


def test_span_without_a_model() -> None:
    span = _span("", "", attributes={"http.route": "/v1/things"}, status_message="failed for ann@example.com")
    result = enrich(span, EnrichmentPolicy(pii=PiiPolicy.HASH, hash_key=b"k"))
    assert result == Enrichment(price_source="", model_version="", pii_counts={"email": 1})
    assert span.cost_usd is None
    assert "llmscope.model.raw" not in span.attributes
    assert span.status_message.startswith("failed for [EMAIL:")


def test_unknown_model_keeps_lowercased_names_and_no_cost() -> None:
    span = _span("Ollama", "My-FineTune-7B", input_tokens=10)
    result = enrich(span, EnrichmentPolicy())
    assert (span.provider, span.request_model, span.cost_usd, result.price_source) == (
        "ollama",
        "my-finetune-7b",
        None,
        "",
    )
