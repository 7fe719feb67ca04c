"""The enrichment stage: canonical provider/model names, exact cost and PII redaction on one span."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.providers import normalise_provider
from schemas.span import Span
from schemas.tenant_settings import OverrideKey, PiiPolicy, PriceOverride
from streams.stages.cost import compute_cost, index_overrides
from streams.stages.model_names import resolve_model
from streams.stages.pii import redact_span

RAW_MODEL_ATTR = "llmscope.model.raw"
MODEL_VERSION_ATTR = "llmscope.model.version"
RAW_REQUEST_MODEL_ATTR = "llmscope.request_model.raw"


@dataclass(frozen=True, slots=True)
class EnrichmentPolicy:
    """Per-tenant settings. `price_overrides` is keyed as `cost.index_overrides` builds it."""

    pii: PiiPolicy = PiiPolicy.OFF
    hash_key: bytes = b""  # required when pii is HASH; per tenant, so hashes do not join across tenants
    price_overrides: Mapping[OverrideKey, PriceOverride] = field(default_factory=dict)
    phone_region: str = "US"  # region assumed for phone numbers written without a country code


@dataclass(frozen=True)
class TenantPolicies:
    """Plain, picklable data: it travels to the worker processes with every batch."""

    default_pii: PiiPolicy
    hash_secret: bytes
    pii: dict[str, PiiPolicy] = field(default_factory=dict)
    prices: dict[str, list[PriceOverride]] = field(default_factory=dict)

    def for_tenant(self, tenant_id: str) -> EnrichmentPolicy:
        return EnrichmentPolicy(
            pii=self.pii.get(tenant_id, self.default_pii),
            # Keyed per tenant, so the same e-mail hashes differently in two tenants.
            hash_key=hmac.new(self.hash_secret, tenant_id.encode(), hashlib.sha256).digest(),
            price_overrides=index_overrides(self.prices.get(tenant_id, [])),
        )


@dataclass(slots=True)
class Enrichment:
    """What enrichment adds beyond the Span fields (future spans-table columns)."""

    price_source: str  # LowCardinality(String): "genai-prices@0.2.3", "tenant-override" or ""
    model_version: str  # String: "2024-08-06", "20241022-v2:0", or ""
    pii_counts: dict[str, int]  # Map(String, UInt32): kind → findings; only kinds found


def enrich(span: Span, policy: EnrichmentPolicy) -> Enrichment:
    """Enrich a span in place: names first, then cost (from the model as resolved from its raw
    string, once), then PII."""
    raw_request = span.request_model
    raw_model = span.attributes.get(RAW_MODEL_ATTR)
    if raw_model:  # enriched before: work from the raw strings, so enrich is idempotent
        raw_request = span.attributes.get(RAW_REQUEST_MODEL_ATTR) or (raw_model if raw_request else "")
    else:
        raw_model = span.model
    answering = resolve_model(raw_model, span.provider) if raw_model else None
    if answering is not None:
        span.attributes[RAW_MODEL_ATTR] = raw_model
        span.attributes[MODEL_VERSION_ATTR] = answering.version
    cost = compute_cost(span, answering, policy.price_overrides)  # the raw name's identity: the version still prices
    span.cost_usd = cost.cost_usd
    if answering is not None:
        span.provider = answering.provider
        if span.response_model:
            span.response_model = answering.family
        if raw_request == raw_model:
            span.request_model = answering.family
        elif raw_request:  # e.g. asked `gpt-4o`, got a dated one: the model asked for, resolved too
            span.attributes[RAW_REQUEST_MODEL_ATTR] = raw_request
            span.request_model = resolve_model(raw_request, span.provider).family
    elif span.provider:
        span.provider = normalise_provider(span.provider)  # provider alone still normalises
    pii_counts = redact_span(span, policy.pii, policy.hash_key, policy.phone_region)
    return Enrichment(cost.price_source, answering.version if answering else "", pii_counts)
