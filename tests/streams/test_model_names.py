"""Provider aliases and model family/version splitting."""

from __future__ import annotations

import pytest
from genai_prices.data_snapshot import get_snapshot

from schemas.providers import normalise_provider
from streams.stages.model_names import resolve_model


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("openai", "openai"),
        ("OpenAI ", "openai"),
        # Azure OpenAI keeps its own id; genai-prices' `azure` falls back to OpenAI prices.
        ("azure.ai.openai", "azure"), ("azure_openai", "azure"), ("az.ai.openai", "azure"), ("azure.ai.inference", "azure"),
        ("aws.bedrock", "aws"), ("bedrock", "aws"),
        ("gcp.gemini", "google"), ("gcp.vertex_ai", "google"), ("gcp.gen_ai", "google"), ("vertex_ai", "google"),
        ("google", "google"),
        ("anthropic", "anthropic"), ("mistral_ai", "mistral"), ("cohere", "cohere"), ("groq", "groq"),
        ("deepseek", "deepseek"), ("x_ai", "x-ai"), ("xai", "x-ai"), ("perplexity", "perplexity"),
        ("Ollama", "ollama"), ("ibm.watsonx.ai", "ibm.watsonx.ai"), ("", ""),
    ],
)  # fmt: skip
def test_normalise_provider(raw: str, expected: str) -> None:
    assert normalise_provider(raw) == expected


@pytest.mark.parametrize(
    ("raw", "provider", "expected"),
    [
        ("gpt-4o-2024-08-06", "openai", ("openai", "gpt-4o", "2024-08-06")),
        ("gpt-4o", "openai", ("openai", "gpt-4o", "")),
        ("openai/gpt-4o", "", ("openai", "gpt-4o", "")),
        ("gpt-4o-mini-2024-07-18", "", ("openai", "gpt-4o-mini", "2024-07-18")),
        ("gpt-4o-2024-05-13", "openai", ("openai", "gpt-4o", "2024-05-13")),  # own genai-prices entry, same family
        ("gpt-4-0613", "openai", ("openai", "gpt-4", "0613")),
        ("o1-2024-12-17", "", ("openai", "o1", "2024-12-17")),
        ("text-embedding-ada-002", "openai", ("openai", "text-embedding-ada-002", "")),  # `-002` is its name
        ("claude-3-5-sonnet-20241022", "anthropic", ("anthropic", "claude-3-5-sonnet", "20241022")),
        ("claude-3-opus-20240229", "", ("anthropic", "claude-3-opus", "20240229")),
        ("claude-3-5-haiku-latest", "anthropic", ("anthropic", "claude-3-5-haiku", "latest")),
        ("claude-3.5-sonnet-20240620", "anthropic", ("anthropic", "claude-3-5-sonnet", "20240620")),
        ("models/gemini-1.5-pro-002", "gcp.gemini", ("google", "gemini-1.5-pro", "002")),
        ("gemini-2.5-pro-preview-05-06", "google", ("google", "gemini-2.5-pro", "preview-05-06")),
        ("projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001", "",
         ("google", "gemini-2.0-flash", "001")),
        ("claude-3-5-sonnet-v2@20241022", "gcp.vertex_ai", ("google", "claude-3-5-sonnet", "v2@20241022")),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock", ("aws", "claude-3-5-sonnet", "20241022-v2:0")),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "", ("aws", "claude-3-5-sonnet", "20241022-v2:0")),
        ("meta.llama3-1-70b-instruct-v1:0", "aws", ("aws", "llama3-1-70b-instruct", "v1:0")),
        ("mistral-large-2407", "mistral_ai", ("mistral", "mistral-large", "2407")),
        ("command-r-plus-08-2024", "cohere", ("cohere", "command-r-plus", "08-2024")),
        ("grok-2-1212", "x_ai", ("x-ai", "grok-2", "1212")),
        ("llama3-70b-8192", "groq", ("groq", "llama3-70b-8192", "")),  # context size, not a date
        ("deepseek-chat", "deepseek", ("deepseek", "deepseek-chat", "")),
        ("gpt-4o", "azure.ai.openai", ("azure", "gpt-4o", "")),
        ("openai/gpt-4o", "openrouter", ("openrouter", "gpt-4o", "")),  # a router stays the provider
        ("meta-llama/Llama-3.3-70B-Instruct", "", ("meta", "llama-3.3-70b-instruct", "")),
        ("my-finetune-7b", "ollama", ("ollama", "my-finetune-7b", "")),
        ("deepseek-v2", "", ("", "deepseek-v2", "")),  # `-v2` alone is part of the name
    ],
)  # fmt: skip
def test_resolve_model(raw: str, provider: str, expected: tuple[str, str, str]) -> None:
    assert tuple(resolve_model(raw, provider)[:3]) == expected


def normalise_model(raw_model: str, provider: str = "") -> tuple[str, str]:
    identity = resolve_model(raw_model, provider)
    return identity.family, identity.version


def test_normalise_model_returns_family_and_version() -> None:
    assert normalise_model("gpt-4o-2024-08-06", "openai") == ("gpt-4o", "2024-08-06")
    assert normalise_model("", "openai") == ("", "")


def test_resolution_is_cached() -> None:
    resolve_model("claude-3-5-sonnet-20241022", "anthropic")
    hits = resolve_model.cache_info().hits
    resolve_model("claude-3-5-sonnet-20241022", "anthropic")
    assert resolve_model.cache_info().hits == hits + 1


def test_a_resolved_model_resolves_to_itself_under_its_own_provider() -> None:
    """What lets enrichment resolve a span's model once: the cost lookup and the model asked for
    (when it is the one that answered) use that identity as it is."""
    snapshot = get_snapshot()
    for provider in snapshot.providers:
        for model in provider.models:
            for given in ("", "litellm", provider.id):
                for raw in (model.id, f"{model.id}-2024-08-06", f"{provider.id}/{model.id}"):
                    first = resolve_model(raw, given)
                    assert resolve_model(first.ref, first.provider) == first, (raw, given)
                    assert resolve_model(raw, first.provider).family == first.family, (raw, given)
