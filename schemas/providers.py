"""Provider ids: the one vocabulary for the `provider` a span is stored with and a price override is
keyed by. The worker normalises every span's provider with it; the query API keys tenants' price
overrides with it, so an override set for `azure.ai.openai` matches spans from `azure`."""

from __future__ import annotations

# Provider ids are genai-prices provider ids wherever genai-prices has one, so the cost stage can
# price with the normalised id as is. Keys: every `gen_ai.provider.name` value the GenAI conventions
# list (and the older `gen_ai.system` ones), OpenInference's `llm.provider`/`llm.system` values and
# OpenLLMetry's (capitalised names before 0.5: they arrive here lowercased). Azure OpenAI (and Azure AI inference) map to `azure`: the
# genai-prices `azure` provider lists Azure's own models and falls back to the `openai` (then
# anthropic, deepseek, x-ai, moonshotai) tables, which is how Azure prices OpenAI models. We do
# not map them to `openai`, because dashboards must still tell Azure traffic apart.
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


def normalise_provider(raw: str) -> str:
    """Canonical provider id (a genai-prices id where one exists); unknown ones lowercased."""
    key = raw.strip().lower()
    return _PROVIDER_ALIASES.get(key, key)
