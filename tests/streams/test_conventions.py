"""Which attribute feeds which field: one test per row of README.md's table, with spans shaped the way
each instrumentation emits them (values as their code computes them from a provider response)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from schemas.span import Span
from schemas.tenant_settings import PRICE_SOURCE
from streams.stages.enrich import EnrichmentPolicy, enrich
from streams.stages.normalise import normalise
from tests.otlp_factory import kv

START = int(datetime(2025, 6, 15, 12, tzinfo=UTC).timestamp()) * 10**9
D = Decimal


def emitted(attrs: dict[str, object], scope: str = "") -> Span:
    """One span as an instrumentation exports it (lists go as OTLP arrays), normalised."""
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    ss.scope.name = scope
    span = ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat", start_time_unix_nano=START,
                        end_time_unix_nano=START + 10**9, kind=trace_pb2.Span.SPAN_KIND_CLIENT)  # fmt: skip
    for key, value in attrs.items():
        if isinstance(value, list):
            span.attributes.add(key=key).value.array_value.values.extend(kv("", v).value for v in value)
        else:
            span.attributes.append(kv(key, value))
    (out,) = normalise(req, "tenant-1")
    return out


def tokens(span: Span) -> tuple[int, int, int, int, int]:
    return (span.input_tokens, span.output_tokens, span.cached_input_tokens, span.cache_write_tokens,
            span.reasoning_tokens)  # fmt: skip


# --- OTel's own instrumentations (opentelemetry-python-contrib, instrumentation-genai) --------------


def test_otel_openai_v2_chat_prompt_tokens_already_include_the_cached_ones() -> None:
    # openai_v2 response_extractors: input = usage.prompt_tokens (OpenAI counts cached tokens in it),
    # cache_read = prompt_tokens_details.cached_tokens; gen_ai.system in the default (pre-1.37) mode.
    span = emitted({
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 1024, "openai.response.service_tier": "default",
    }, scope="opentelemetry.instrumentation.openai_v2")  # fmt: skip
    assert (span.provider, span.operation, span.request_model, span.response_model) == (
        "openai", "chat", "gpt-4o", "gpt-4o-2024-08-06")
    assert tokens(span) == (1200, 300, 1024, 0, 0)
    assert span.finish_reasons == ["stop"] and span.usage_reported


def test_otel_genai_util_anthropic_input_is_the_semconv_total_and_output_includes_thinking() -> None:
    # opentelemetry-instrumentation-anthropic (messages_extractors.extract_usage_tokens) sums input +
    # cache_creation + cache_read; util-genai's InferenceInvocation adds thinking tokens to output.
    span = emitted({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 26_000, "gen_ai.usage.cache_read.input_tokens": 20_000,
        "gen_ai.usage.cache_creation.input_tokens": 5_000, "gen_ai.usage.output_tokens": 900,
        "gen_ai.usage.reasoning.output_tokens": 600, "gen_ai.response.finish_reasons": ["end_turn"],
        "gen_ai.conversation.id": "conv-7",
    }, scope="opentelemetry.instrumentation.anthropic")  # fmt: skip
    assert tokens(span) == (26_000, 900, 20_000, 5_000, 600)
    assert (span.provider, span.session_id, span.finish_reasons) == ("anthropic", "conv-7", ["end_turn"])


def test_semconv_genai_cache_write_name_is_read_and_wins_over_the_old_cache_creation_name() -> None:
    # semantic-conventions-genai changelog.d/440.breaking.md renamed cache_creation to cache_write.
    new_only = emitted({"gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 1500,
                        "gen_ai.usage.output_tokens": 10, "gen_ai.usage.cache_write.input_tokens": 1200})  # fmt: skip
    assert tokens(new_only) == (1500, 10, 0, 1200, 0)
    both = emitted({"gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 10,
                    "gen_ai.usage.cache_write.input_tokens": 1200,
                    "gen_ai.usage.cache_creation.input_tokens": 7})  # fmt: skip
    assert both.cache_write_tokens == 1200


def test_otel_google_genai_counts_as_given_gemini_candidates_exclude_thinking() -> None:
    # google_genai generate_content: input = prompt_token_count (cached content included), output =
    # candidates_token_count, which for Gemini excludes thoughts_token_count; no reasoning attribute,
    # so the thinking tokens cannot be recovered (README: known gaps). gen_ai.system is "gemini".
    span = emitted({
        "gen_ai.operation.name": "generate_content", "gen_ai.system": "gemini",
        "gen_ai.request.model": "gemini-2.5-flash", "gen_ai.usage.input_tokens": 812,
        "gen_ai.usage.output_tokens": 95, "gen_ai.response.finish_reasons": ["stop"],
    }, scope="opentelemetry.instrumentation.google_genai")  # fmt: skip
    assert (span.provider, span.operation, tokens(span)) == ("gemini", "generate_content", (812, 95, 0, 0, 0))


def test_otel_vertexai_response_model_is_the_model_version() -> None:
    span = emitted({
        "gen_ai.operation.name": "chat", "gen_ai.system": "vertex_ai", "gen_ai.request.model": "gemini-2.5-pro",
        "gen_ai.response.model": "gemini-2.5-pro", "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 7,
    }, scope="opentelemetry.instrumentation.vertexai")  # fmt: skip
    assert (span.provider, span.model, tokens(span)) == ("vertex_ai", "gemini-2.5-pro", (40, 7, 0, 0, 0))


def test_otel_botocore_bedrock_converse_raw_input_without_cache_attributes_is_kept() -> None:
    # botocore extensions/bedrock.py sets usage.inputTokens as is and reports no cache counts, so an
    # input that excluded cached tokens cannot be completed (README: known gaps).
    span = emitted({
        "gen_ai.operation.name": "chat", "gen_ai.system": "aws.bedrock",
        "gen_ai.request.model": "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        "gen_ai.usage.input_tokens": 31, "gen_ai.usage.output_tokens": 12,
        "gen_ai.response.finish_reasons": ["end_turn"],
    }, scope="opentelemetry.instrumentation.botocore.bedrock-runtime")  # fmt: skip
    assert (span.provider, tokens(span)) == ("aws.bedrock", (31, 12, 0, 0, 0))


# --- OpenInference (Arize-ai/openinference) -----------------------------------------------------------


def test_openinference_openai_prompt_and_details() -> None:
    span = emitted({
        "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
        "llm.model_name": "gpt-4o-2024-08-06", "llm.token_count.prompt": 1200,
        "llm.token_count.prompt_details.cache_read": 1024, "llm.token_count.completion": 500,
        "llm.token_count.completion_details.reasoning": 320, "llm.token_count.total": 1700,
        "session.id": "sess-1", "user.id": "user-1", "llm.prompt_template.version": "v3",
    }, scope="openinference.instrumentation.openai")  # fmt: skip
    assert (span.provider, span.operation, span.request_model, span.response_model) == (
        "openai", "llm", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06")
    assert tokens(span) == (1200, 500, 1024, 0, 320)
    assert (span.session_id, span.user_id, span.prompt_version) == ("sess-1", "user-1", "v3")


def test_openinference_openai_embedding_names_its_model_in_embedding_model_name() -> None:
    # openai _response_attributes_extractor: embeddings carry embedding.model_name, not llm.model_name.
    span = emitted({"openinference.span.kind": "EMBEDDING", "llm.provider": "openai", "llm.system": "openai",
                    "embedding.model_name": "text-embedding-3-small", "llm.token_count.prompt": 8,
                    "llm.token_count.total": 8}, scope="openinference.instrumentation.openai")  # fmt: skip
    assert (span.operation, span.model, tokens(span)) == ("embeddings", "text-embedding-3-small", (8, 0, 0, 0, 0))
    enrich(span, EnrichmentPolicy())
    assert span.cost_usd == D("0.00000016")  # $0.02 per MTok


def test_openinference_anthropic_prompt_already_includes_the_cache() -> None:
    # anthropic _wrappers._get_llm_token_counts: prompt = input + cache_creation + cache_read.
    span = emitted({
        "openinference.span.kind": "LLM", "llm.provider": "anthropic", "llm.system": "anthropic",
        "llm.model_name": "claude-3-5-sonnet-20241022", "llm.token_count.prompt": 26_000,
        "llm.token_count.completion": 800, "llm.token_count.prompt_details.cache_read": 20_000,
        "llm.token_count.prompt_details.cache_write": 5_000,
    }, scope="openinference.instrumentation.anthropic")  # fmt: skip
    assert tokens(span) == (26_000, 800, 20_000, 5_000, 0)


def test_openinference_raw_anthropic_prompt_smaller_than_its_cache_is_completed() -> None:
    # claude_agent_sdk _wrappers before its fix yielded Anthropic's raw input_tokens as the prompt;
    # the payload recorded in that package's cassette: input 3, cache read 17,024, output 4.
    span = emitted({
        "openinference.span.kind": "AGENT", "llm.token_count.prompt": 3, "llm.token_count.completion": 4,
        "llm.token_count.total": 7, "llm.token_count.prompt_details.cache_read": 17_024,
    }, scope="openinference.instrumentation.claude_agent_sdk")  # fmt: skip
    assert tokens(span) == (17_027, 4, 17_024, 0, 0)


def test_openinference_bedrock_anthropic_hosting_provider_wins_over_the_model_vendor() -> None:
    # bedrock utils/anthropic/_attributes.py: provider "aws", system "anthropic", the model id with its
    # one "vendor." prefix stripped, prompt summed with the cache.
    span = emitted({
        "openinference.span.kind": "LLM", "llm.provider": "aws", "llm.system": "anthropic",
        "llm.model_name": "claude-3-5-sonnet-20241022-v2:0", "llm.token_count.prompt": 2_100,
        "llm.token_count.completion": 64, "llm.token_count.prompt_details.cache_read": 2_000,
    }, scope="openinference.instrumentation.bedrock")  # fmt: skip
    assert (span.provider, span.model) == ("aws", "claude-3-5-sonnet-20241022-v2:0")
    assert tokens(span) == (2_100, 64, 2_000, 0, 0)


def test_openinference_vertexai_full_model_path_and_counts_as_given() -> None:
    # vertexai _wrapper._parse_usage_metadata: prompt_token_count, candidates_token_count (thinking
    # excluded, no reasoning attribute), total_token_count; llm.model_name is the request's full path.
    span = emitted({
        "openinference.span.kind": "LLM",
        "llm.model_name": "projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro",
        "llm.token_count.prompt": 320, "llm.token_count.completion": 41, "llm.token_count.total": 1_161,
    }, scope="openinference.instrumentation.vertexai")  # fmt: skip
    assert tokens(span) == (320, 41, 0, 0, 0)
    enrich(span, EnrichmentPolicy())
    assert (span.provider, span.model) == ("google", "gemini-2.5-pro")


# --- OpenLLMetry (traceloop/openllmetry) ----------------------------------------------------------------


def test_openllmetry_anthropic_before_0_5_old_names_and_summed_prompt() -> None:
    # anthropic __init__._set_token_usage: prompt_tokens = input + cache_read + cache_creation, cache
    # counts as gen_ai.usage.cache_*_input_tokens (0 when absent); per-choice finish_reason;
    # association properties and managed-prompt keys from the Traceloop SDK.
    span = emitted({
        "gen_ai.system": "Anthropic", "llm.request.type": "chat", "gen_ai.request.model": "claude-3-5-haiku-latest",
        "gen_ai.response.model": "claude-3-5-haiku-20241022", "gen_ai.usage.prompt_tokens": 5_050,
        "gen_ai.usage.completion_tokens": 120, "llm.usage.total_tokens": 5_170,
        "gen_ai.usage.cache_read_input_tokens": 0, "gen_ai.usage.cache_creation_input_tokens": 5_000,
        "gen_ai.completion.0.finish_reason": "end_turn", "gen_ai.completion.0.role": "assistant",
        "traceloop.association.properties.session_id": "chat-9", "traceloop.association.properties.user_id": "u-9",
        "traceloop.prompt.key": "support-reply", "traceloop.prompt.version": 4,
    }, scope="opentelemetry.instrumentation.anthropic")  # fmt: skip
    assert (span.provider, span.operation) == ("anthropic", "chat")
    assert tokens(span) == (5_050, 120, 0, 5_000, 0)
    assert span.finish_reasons == ["end_turn"]
    assert (span.session_id, span.user_id) == ("chat-9", "u-9")
    assert (span.prompt_name, span.prompt_version) == ("support-reply", "4")


def test_openllmetry_openai_reasoning_tokens_and_end_user() -> None:
    span = emitted({
        "gen_ai.system": "OpenAI", "llm.request.type": "chat", "gen_ai.request.model": "o3-mini",
        "gen_ai.response.model": "o3-mini-2025-01-31", "gen_ai.usage.prompt_tokens": 900,
        "gen_ai.usage.completion_tokens": 1_400, "gen_ai.usage.reasoning_tokens": 1_152,
        "gen_ai.usage.cache_read_input_tokens": 768, "llm.user": "customer-17",
        "gen_ai.completion.0.finish_reason": "stop", "gen_ai.completion.1.finish_reason": "length",
    }, scope="opentelemetry.instrumentation.openai")  # fmt: skip
    assert tokens(span) == (900, 1_400, 768, 0, 1_152)
    assert (span.user_id, span.finish_reasons) == ("customer-17", ["stop", "length"])


def test_openllmetry_0_5_dotted_cache_names_and_semconv_provider_values() -> None:
    # semconv-ai MIGRATION.md (0.4 -> 0.5): cache keys became the dotted OTel names and GenAISystem
    # values the OTel spellings ("mistral_ai", "aws.bedrock", "az.ai.openai", "gcp.gen_ai", ...).
    span = emitted({
        "gen_ai.system": "mistral_ai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "mistral-large-latest",
        "gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 256, "gen_ai.usage.cache_creation.input_tokens": 0,
    })  # fmt: skip
    assert tokens(span) == (400, 50, 256, 0, 0)
    enrich(span, EnrichmentPolicy())
    assert span.provider == "mistral"


@pytest.mark.parametrize(("request_type", "operation"), [("completion", "text_completion"), ("embedding", "embeddings"),
                                                          ("rerank", "rerank"), ("unknown", "")])  # fmt: skip
def test_openllmetry_request_type_becomes_the_genai_operation_name(request_type: str, operation: str) -> None:
    assert emitted({"gen_ai.system": "cohere", "llm.request.type": request_type}).operation == operation


# --- Rules that hold across conventions ---------------------------------------------------------------------


def test_raw_anthropic_input_with_semconv_names_is_completed_when_the_cache_exceeds_it() -> None:
    # A span passing Anthropic's input_tokens (cache excluded) under the semconv name: the parts
    # cannot exceed a total, so they are added; a total as large as its parts is taken as a total.
    raw = emitted({"gen_ai.provider.name": "anthropic", "gen_ai.usage.input_tokens": 12,
                   "gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 9_000,
                   "gen_ai.usage.cache_write.input_tokens": 1_000})  # fmt: skip
    assert tokens(raw) == (10_012, 80, 9_000, 1_000, 0)


def test_gemini_thinking_reported_apart_from_candidates_is_added_to_output() -> None:
    # candidates_token_count 200 with thoughts_token_count 1,500 under semconv names: reasoning is
    # part of output in semconv, and a part cannot exceed its total.
    span = emitted({"gen_ai.provider.name": "gcp.gemini", "gen_ai.usage.input_tokens": 50,
                    "gen_ai.usage.output_tokens": 200, "gen_ai.usage.reasoning.output_tokens": 1_500})  # fmt: skip
    assert tokens(span) == (50, 1_700, 0, 0, 1_500)


def test_current_names_win_over_deprecated_and_openinference_ones_field_by_field() -> None:
    span = emitted({
        "gen_ai.provider.name": "openai", "gen_ai.system": "azure.ai.openai", "llm.provider": "azure",
        "gen_ai.request.model": "gpt-4o", "llm.model_name": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.prompt_tokens": 1, "llm.token_count.prompt": 2,
        "gen_ai.usage.output_tokens": 10, "gen_ai.usage.completion_tokens": 1, "llm.token_count.completion": 2,
        "gen_ai.usage.cache_read.input_tokens": 50, "gen_ai.usage.cache_read_input_tokens": 1,
        "gen_ai.usage.reasoning.output_tokens": 5, "gen_ai.usage.reasoning_tokens": 1,
        "gen_ai.conversation.id": "conv", "session.id": "sess", "user.id": "u", "enduser.id": "e",
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.completion.0.finish_reason": "length",
    })  # fmt: skip
    assert (span.provider, span.request_model, span.response_model) == ("openai", "gpt-4o", "gpt-4o-mini")
    assert tokens(span) == (100, 10, 50, 0, 5)
    assert (span.session_id, span.user_id, span.finish_reasons) == ("conv", "u", ["stop"])


# --- Provider names: one canonical provider each, and their models priced ------------------------------------


@pytest.mark.parametrize(
    ("name", "model", "canonical", "price_per_mtok_input"),
    [
        ("openai", "gpt-4o", "openai", D("2.5")),
        ("azure.ai.openai", "gpt-4o", "azure", D("2.5")),  # Azure prices OpenAI models like OpenAI
        ("az.ai.openai", "gpt-4o", "azure", D("2.5")),  # gen_ai.system before semconv 1.37
        ("azure.ai.inference", "Phi-4", "azure", D("0.125")),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0", "aws", D(3)),
        ("aws", "amazon.nova-pro-v1:0", "aws", D("0.8")),  # OpenInference llm.provider
        ("gcp.vertex_ai", "gemini-2.0-flash", "google", D("0.1")),
        ("gcp.gemini", "gemini-2.0-flash", "google", D("0.1")),
        ("gcp.gen_ai", "gemini-2.0-flash", "google", D("0.1")),
        ("vertex_ai", "gemini-2.0-flash", "google", D("0.1")),  # gen_ai.system of OTel's vertexai
        ("gemini", "gemini-2.0-flash", "google", D("0.1")),  # gen_ai.system of OTel's google_genai
        ("vertexai", "gemini-2.0-flash", "google", D("0.1")),  # OpenInference llm.system
        ("anthropic", "claude-3-5-sonnet-20241022", "anthropic", D(3)),
        ("Anthropic", "claude-3-5-sonnet-20241022", "anthropic", D(3)),  # OpenLLMetry before 0.5
        ("x_ai", "grok-3", "x-ai", D(3)),
        ("xai", "grok-3", "x-ai", D(3)),  # OpenInference
        ("deepseek", "deepseek-chat", "deepseek", D("0.27")),
        ("mistral_ai", "mistral-small-latest", "mistral", D("0.1")),
        ("MistralAI", "mistral-small-latest", "mistral", D("0.1")),  # OpenLLMetry before 0.5
        ("mistralai", "mistral-small-latest", "mistral", D("0.1")),  # OpenInference
        ("groq", "llama-3.3-70b-versatile", "groq", D("0.59")),
        ("perplexity", "sonar-pro", "perplexity", D("3.014")),  # $3 per MTok + $14 per thousand requests
        ("cohere", "command-r", "cohere", D("0.15")),
        ("moonshot_ai", "kimi-k2-0711-preview", "moonshotai", D("0.6")),
        ("together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "together", D("0.88")),
    ],
)
def test_each_provider_name_maps_to_one_canonical_provider_whose_models_are_priced(
    name: str, model: str, canonical: str, price_per_mtok_input: Decimal
) -> None:
    span = emitted({"gen_ai.provider.name": name, "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 0})  # fmt: skip
    result = enrich(span, EnrichmentPolicy())
    assert span.provider == canonical
    assert (span.cost_usd, result.price_source) == (price_per_mtok_input, PRICE_SOURCE)


def test_ibm_watsonx_has_a_canonical_provider_but_no_price() -> None:
    span = emitted({"gen_ai.provider.name": "ibm.watsonx.ai", "gen_ai.request.model": "ibm/granite-3-8b-instruct",
                    "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1})  # fmt: skip
    enrich(span, EnrichmentPolicy())
    assert (span.provider, span.cost_usd) == ("ibm.watsonx.ai", None)
    old = emitted({"gen_ai.system": "Watsonx", "gen_ai.request.model": "ibm/granite-13b-chat-v2"})  # OpenLLMetry < 0.5
    enrich(old, EnrichmentPolicy())
    assert old.provider == "ibm.watsonx.ai"


def test_readme_table_lists_exactly_the_attributes_the_normaliser_reads_in_its_order() -> None:
    from schemas import usage
    from streams.stages import normalise as n

    code = {
        "provider": n._PROVIDER, "request model": n._REQUEST_MODEL, "response model": n._RESPONSE_MODEL,
        "operation": n._OPERATION, "input tokens": usage.INPUT_TOKENS, "output tokens": usage.OUTPUT_TOKENS,
        "cache read": usage.CACHE_READ_TOKENS, "cache write": usage.CACHE_WRITE_TOKENS,
        "reasoning": usage.REASONING_TOKENS, "session": n._SESSION, "user": n._USER,
        "prompt name": n._PROMPT_NAME, "prompt version": n._PROMPT_VERSION,
        "finish reasons": (n._FINISH_REASONS, "gen_ai.completion.<i>.finish_reason"),
    }  # fmt: skip
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Which attribute feeds which field", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in code:
            rows[cells[0]] = tuple(re.findall(r"`([^`]+)`", cells[1]))
    assert rows == {field: tuple(keys) for field, keys in code.items()}
