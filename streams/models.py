"""Provider and model-name normalisation: one canonical provider id and model family per span."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from genai_prices.data_snapshot import get_snapshot

# Provider ids are genai-prices provider ids wherever genai-prices has one, so the cost stage can
# price with the normalised id as is. Keys: every `gen_ai.provider.name` value the GenAI conventions
# list (and the older `gen_ai.system` ones), OpenInference's `llm.provider`/`llm.system` values and
# OpenLLMetry's (capitalised names before 0.5: they arrive here lowercased).
# Azure OpenAI (and Azure AI inference) map to `azure`: the genai-prices `azure` provider lists
# Azure's own models and falls back to the `openai` (then anthropic, deepseek, x-ai, moonshotai)
# tables, which is how Azure prices OpenAI models. We do not map them to `openai`, because
# dashboards must still tell Azure traffic apart.
_PROVIDER_ALIASES: dict[str, str] = {
    # OpenAI
    "openai": "openai",
    "openai_chat": "openai",
    "openai.chat": "openai",
    "oai": "openai",
    # Azure (OTel semconv `azure.ai.openai`, `azure.ai.inference`; old `az.ai.*`)
    "azure": "azure",
    "azure.ai.openai": "azure",
    "azure_openai": "azure",
    "az.ai.openai": "azure",
    "azureopenai": "azure",
    "azure-openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_ai": "azure",
    "azure-ai": "azure",
    # AWS Bedrock: genai-prices calls it `aws`
    "aws": "aws",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "aws_bedrock": "aws",
    "aws-bedrock": "aws",
    "amazon_bedrock": "aws",
    "amazon-bedrock": "aws",
    "bedrock-runtime": "aws",
    "amazon": "aws",
    # Google: Gemini API and Vertex AI share one genai-prices table
    "google": "google",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "vertex-ai": "google",
    "vertex": "google",
    "gemini": "google",
    "google_genai": "google",
    "google-genai": "google",
    "google_vertexai": "google",
    "google.generativeai": "google",
    "google-generativeai": "google",
    "googleai": "google",
    # Others
    "anthropic": "anthropic",
    "claude": "anthropic",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "mistral": "mistral",
    "mistral-ai": "mistral",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "deepseek-ai": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "grok": "x-ai",
    "perplexity": "perplexity",
    "perplexity_ai": "perplexity",
    "together": "together",
    "together_ai": "together",
    "together-ai": "together",
    "togetherai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "moonshot": "moonshotai",
    "moonshotai": "moonshotai",
    "moonshot_ai": "moonshotai",
    # Providers genai-prices has no table for keep one canonical id all the same (no price: cost null).
    "ibm.watsonx.ai": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
    "watsonx.ai": "ibm.watsonx.ai",
    "ibm_watsonx": "ibm.watsonx.ai",
    "hugging_face": "huggingface",
    "huggingface": "huggingface",
    "aleph_alpha": "aleph_alpha",
    "alephalpha": "aleph_alpha",
    "meta": "meta",
    "meta-llama": "meta",
    "voyage": "voyageai",
    "voyageai": "voyageai",
}

# Vendor prefixes seen in `vendor/model` refs (OpenRouter, LiteLLM, HF) and Bedrock `vendor.model`.
_VENDOR_PREFIXES: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "vertex_ai": "google",
    "mistralai": "mistral",
    "mistral": "mistral",
    "meta-llama": "meta",
    "meta": "meta",
    "x-ai": "x-ai",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "deepseek-ai": "deepseek",
    "cohere": "cohere",
    "azure": "azure",
    "bedrock": "aws",
    "groq": "groq",
    "amazon": "aws",
}
# Routers/gateways: the real provider is whatever the model ref names.
_GATEWAYS = frozenset({"", "litellm", "langchain", "llamaindex", "portkey", "helicone"})

# Bedrock: optional cross-region profile (`us.`, `eu.`, `apac.`, `global.`, …) then `vendor.`.
_BEDROCK_RE = re.compile(
    r"^(?:(?:us|eu|apac|ap|ca|us-gov|global|regional|jp|au)\.)?"
    r"(anthropic|meta|amazon|cohere|mistral|ai21|deepseek|openai|qwen|writer|google|nvidia|moonshotai|zai)\.(.+)$"
)
_DATE_DASHED = re.compile(r"-(\d{4})-(\d{2})-(\d{2})$")
_DATE_COMPACT = re.compile(r"-(\d{4})(\d{2})(\d{2})$")
_MONTH_YEAR = re.compile(r"-(\d{2})-(\d{4})$")  # Cohere `command-r-plus-08-2024`
_FOUR = re.compile(r"-(\d{2})(\d{2})$")  # OpenAI MMDD (`-0613`), Mistral YYMM (`-2407`)
_THREE = re.compile(r"-\d{3}$")  # Google revision (`gemini-1.5-pro-002`)
_REVISION = re.compile(r":\d+$")  # Bedrock `:0`
_VN = re.compile(r"-v\d+(?:\.\d+)?$")  # Bedrock/Vertex `-v2`, only after another version part
_SEPARATORS = re.compile(r"[-_.]")


class ModelIdentity(NamedTuple):
    """What a raw model string names: provider id, model family, version, and the ref to price."""

    provider: str
    family: str
    version: str
    ref: str  # the raw string, trimmed and lowercased: what genai-prices is asked first


def normalise_provider(raw: str) -> str:
    """Canonical provider id (a genai-prices id where one exists); unknown ones lowercased."""
    key = raw.strip().lower()
    return _PROVIDER_ALIASES.get(key, key)


def normalise_model(raw_model: str, provider: str = "") -> tuple[str, str]:
    """(canonical model family, version) for a raw model string, e.g. ('gpt-4o', '2024-08-06')."""
    identity = resolve_model(raw_model, provider)
    return identity.family, identity.version


@lru_cache(maxsize=8192)
def resolve_model(raw_model: str, provider: str = "") -> ModelIdentity:
    """Provider (inferred from the model when empty), family and version; cached, models are few."""
    ref = raw_model.strip().lower()
    provider = normalise_provider(provider)
    if not ref:
        return ModelIdentity(provider, "", "", "")
    inferred, cleaned = _strip_prefixes(ref)
    if provider in _GATEWAYS and inferred:
        provider = inferred
    family, version = _peel(cleaned)
    matched = _genai_model_id(ref, cleaned, provider)
    if matched is not None:
        matched_provider, model_id = matched
        id_family = _peel(_strip_prefixes(model_id.lower())[1])[0]
        if cleaned == id_family or (cleaned.startswith(id_family) and cleaned[len(id_family)] in "-@:._"):
            # genai-prices knows this model: its id (minus any version) is the family.
            family, version = id_family, cleaned[len(id_family) + 1 :]
        elif _SEPARATORS.sub("", family) == _SEPARATORS.sub("", id_family):
            family = id_family  # `claude-3.5-sonnet` is genai-prices' `claude-3-5-sonnet`
        if provider in _GATEWAYS:
            provider = matched_provider
    return ModelIdentity(provider, family, version, ref)


def _strip_prefixes(ref: str) -> tuple[str, str]:
    """(provider named by a prefix or '', ref without path, vendor and Bedrock-region prefixes)."""
    inferred = ""
    if "models/" in ref:  # `models/gemini-…`, `projects/…/publishers/google/models/gemini-…`
        head, _, ref = ref.rpartition("models/")
        if "publishers/" in head:
            inferred = _VENDOR_PREFIXES.get(head.rstrip("/").rpartition("publishers/")[2], "")
    if "/" in ref:
        vendor, _, rest = ref.partition("/")
        if vendor in _VENDOR_PREFIXES and rest:
            inferred, ref = _VENDOR_PREFIXES[vendor], rest
    if m := _BEDROCK_RE.match(ref):
        inferred, ref = "aws", m.group(2)
    return inferred, ref


def _peel(name: str) -> tuple[str, str]:
    """Split version suffixes (dates, revisions, `-latest`, `@…`, `-v2:0`) off a model name."""
    family = name
    while True:
        cut = _version_cut(family, peeled=family != name)
        if cut is None or cut <= 0:
            break
        family = family[:cut]
    if family == name:
        return name, ""
    return family, name[len(family) + 1 :]


def _version_cut(s: str, peeled: bool) -> int | None:
    """Where the last version-like suffix of `s` starts, or None."""
    if "@" in s:  # Vertex `claude-3-5-sonnet-v2@20241022`
        return s.index("@")
    if m := _REVISION.search(s):
        return m.start()
    if peeled and (m := _VN.search(s)):
        return m.start()
    if (m := _DATE_DASHED.search(s)) and _is_date(int(m[1]), int(m[2]), int(m[3])):
        return m.start()
    if (m := _DATE_COMPACT.search(s)) and _is_date(int(m[1]), int(m[2]), int(m[3])):
        return m.start()
    if (m := _MONTH_YEAR.search(s)) and 1 <= int(m[1]) <= 12 and 2020 <= int(m[2]) <= 2099:
        return m.start()
    if m := _FOUR.search(s):
        a, b = int(m[1]), int(m[2])
        if (1 <= a <= 12 and 1 <= b <= 31) or (22 <= a <= 39 and 1 <= b <= 12):
            return m.start()
    if s.endswith("-latest"):
        return len(s) - len("-latest")
    if s.startswith("gemini") and (m := _THREE.search(s)):
        return m.start()
    return None


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return 2000 <= year <= 2099


def _genai_model_id(ref: str, cleaned: str, provider: str) -> tuple[str, str] | None:
    """(provider id, model id) genai-prices matches for the raw ref, else the cleaned one."""
    snapshot = get_snapshot()
    for candidate in dict.fromkeys((ref, cleaned)):
        try:
            found_provider, model = snapshot.find_provider_model(candidate, None, provider or None, None)
        except LookupError:
            continue
        return found_provider.id, model.id
    return None
