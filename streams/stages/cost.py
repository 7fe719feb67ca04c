"""Exact per-span cost in USD from genai-prices' bundled table or a tenant's price override."""

# Token semantics (OTel GenAI semconv): `input_tokens` is the TOTAL input and already includes
# `cached_input_tokens` (cache reads) and `cache_write_tokens`; `reasoning_tokens` is part of
# `output_tokens`. Anthropic's native `input_tokens` excludes cache tokens: the normaliser upstream
# sums them, and this stage expects the sums. Counts that break these subset rules get no cost.
# Zero is not unknown: a span that stated its usage as zero tokens costs $0 (plus the per-request fee
# of the few models that charge one); a span that stated no usage at all gets no cost.
# A class without its own price bills at its parent's: cache reads/writes as input, reasoning as
# output. Cache writes all bill at the 5-minute rate (`cache_write_mtok`): spans carry no TTL split.

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal
from functools import lru_cache
from typing import NamedTuple

from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices, TimeOfDateConstraint

from schemas.span import Span
from schemas.tenant_settings import OVERRIDE_SOURCE, PRICE_SOURCE, OverrideKey, PriceOverride, override_key
from schemas.times import NS_PER_DAY, NS_PER_SECOND
from streams.stages.model_names import ModelIdentity

TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output", "reasoning")

# 60 significant digits: token counts times per-million prices never round, so costs are exact.
_CTX = Context(prec=60)
_ZERO = Decimal(0)
# The spans table's cost column is Decimal(38, 12). A larger cost (a tenant's price override near the
# largest price the API takes, times billions of tokens) would fail its batch's insert on every retry.
_STORABLE_COST = Decimal(10) ** 26
# Attributes that carry the service tier the provider billed (OpenAI priority/flex, batch).
_TIER_KEYS = ("openai.response.service_tier", "gen_ai.openai.response.service_tier", "gen_ai.response.service_tier")


@dataclass(slots=True)
class CostResult:
    cost_usd: Decimal | None  # None = unknown (no price, no usage, or inconsistent usage); never a guessed 0
    price_source: str  # PRICE_SOURCE, OVERRIDE_SOURCE, or "" when unknown
    model_ref: str  # the priced model: genai-prices model id or the override's model
    breakdown: dict[str, Decimal] = field(default_factory=dict)  # TOKEN_CLASSES (+ "requests") → USD
    note: str = ""  # why cost_usd is None, for debugging


def index_overrides(overrides: list[PriceOverride]) -> dict[OverrideKey, PriceOverride]:
    """Key overrides the way compute_cost looks them up (provider normalised, model lowercased)."""
    return {override_key(o.provider, o.model): o for o in overrides}


class _Rates(NamedTuple):
    """Per-million prices of the five token classes (+ per-thousand request fee)."""

    input: Decimal | TieredPrices
    cached_input: Decimal | TieredPrices
    cache_write: Decimal | TieredPrices
    output: Decimal | TieredPrices
    reasoning: Decimal | TieredPrices
    requests_kcount: Decimal | None


def compute_cost(
    span: Span, identity: ModelIdentity | None, overrides: Mapping[OverrideKey, PriceOverride] | None = None
) -> CostResult:
    """Cost of one span whose model resolved to `identity` (None: it names no model). An override
    for (provider, model) wins over the table; prices are those in force at start."""
    if identity is None:
        return CostResult(None, "", "", note="no model")
    if not span.has_usage:
        # Never reported (an interrupted stream, an instrumentation that records none): unknown.
        # Reported as zero (a cached answer, a refused call) is known, and priced below at $0.
        return CostResult(None, "", identity.family, note="no usage")
    if (
        span.cached_input_tokens + span.cache_write_tokens > span.input_tokens
        or span.reasoning_tokens > span.output_tokens
        or min(span.cached_input_tokens, span.cache_write_tokens, span.reasoning_tokens) < 0
    ):
        return CostResult(None, "", identity.family, note="cache/reasoning tokens exceed their totals")
    if overrides:
        override = _find_override(overrides, identity.provider, identity.ref, identity.family)
        if override is not None:
            return _priced(span, _override_rates(override), OVERRIDE_SOURCE, override.model)
    ts_ns = span.start_time_ns or span.end_time_ns
    tier = next((span.attributes[k] for k in _TIER_KEYS if k in span.attributes), "")
    found = _table_rates(identity, ts_ns // NS_PER_DAY, tier)
    if found is None:
        return CostResult(None, "", identity.family, note="no price for model")
    model_id, rates = found
    if rates is None:  # time-of-day pricing (e.g. DeepSeek off-peak): resolve at the exact second
        model_id, rates = _time_of_day_rates(identity, ts_ns // NS_PER_SECOND, tier)
        if rates is None:
            return CostResult(None, "", model_id, note="no token price for model")
    return _priced(span, rates, PRICE_SOURCE, model_id)


def _find_override(
    overrides: Mapping[OverrideKey, PriceOverride], provider: str, ref: str, family: str
) -> PriceOverride | None:
    # Most specific first: this provider + exact model string, then provider + family, then any provider.
    for key in ((provider, ref), (provider, family), ("", ref), ("", family)):
        if (found := overrides.get(key)) is not None:
            return found
    return None


def _override_rates(o: PriceOverride) -> _Rates:
    return _Rates(
        input=o.input_mtok,
        cached_input=o.input_mtok if o.cached_input_mtok is None else o.cached_input_mtok,
        cache_write=o.input_mtok if o.cache_write_mtok is None else o.cache_write_mtok,
        output=o.output_mtok,
        reasoning=o.output_mtok if o.reasoning_mtok is None else o.reasoning_mtok,
        requests_kcount=None,
    )


@lru_cache(maxsize=16384)
def _table_rates(identity: ModelIdentity, day: int, tier: str) -> tuple[str, _Rates | None] | None:
    """(model id, rates) for one model on one UTC day; rates None when they vary within the day."""
    found = _lookup(identity)
    if found is None:
        return None
    in_provider, model = found
    if isinstance(model.prices, list) and any(isinstance(c.constraint, TimeOfDateConstraint) for c in model.prices):
        return model.id, None
    instant = datetime.fromtimestamp(day * 86_400, tz=UTC)
    rates = _rates(model.get_prices(instant, _price_context(tier) if in_provider else None))
    return None if rates is None else (model.id, rates)


@lru_cache(maxsize=4096)  # per second: the spans of a burst share a few; resolving costs ≈ 6 µs
def _time_of_day_rates(identity: ModelIdentity, second: int, tier: str) -> tuple[str, _Rates | None]:
    in_provider, model = _lookup(identity)  # type: ignore[misc]  # found a moment ago
    instant = datetime.fromtimestamp(second, tz=UTC)
    return model.id, _rates(model.get_prices(instant, _price_context(tier) if in_provider else None))


@lru_cache(maxsize=8192)
def _lookup(identity: ModelIdentity) -> tuple[bool, ModelInfo] | None:
    """The genai-prices model for a provider and raw ref (else its cleaned form), and whether it is
    the provider's own entry (True) or borrowed through fallback (Azure → OpenAI)."""
    snapshot = get_snapshot()
    provider, ref = identity.provider, identity.ref
    # The raw ref first (OpenRouter/Groq ids keep their `vendor/` prefix), then it without prefixes.
    cleaned = f"{identity.family}-{identity.version}" if identity.version else identity.family
    for candidate in dict.fromkeys((ref, cleaned)):
        try:
            found_provider, model = snapshot.find_provider_model(candidate, None, provider or None, None)
        except LookupError:
            continue
        return any(model is m for m in found_provider.models), model
    return None


def _price_context(tier: str) -> dict[str, str] | None:
    tier = tier.strip().lower()
    if not tier or tier in ("auto", "standard"):
        return None
    if tier == "batch":
        return {"processing": "batch"}
    return {"service_tier": tier}


def _rates(p: ModelPrice) -> _Rates | None:
    """The five class prices, or None when the model has no token prices (priced per image, …)."""
    if p.input_mtok is None and p.output_mtok is None:
        return None
    # A class without its own price is billed as its parent: cache tokens as input, reasoning as output.
    input_price = p.input_mtok if p.input_mtok is not None else _ZERO
    output_price = p.output_mtok if p.output_mtok is not None else _ZERO
    return _Rates(
        input=input_price,
        cached_input=p.cache_read_mtok if p.cache_read_mtok is not None else input_price,
        cache_write=p.cache_write_mtok if p.cache_write_mtok is not None else input_price,
        output=output_price,
        reasoning=p.output_reasoning_mtok if p.output_reasoning_mtok is not None else output_price,
        requests_kcount=p.requests_kcount if isinstance(p.requests_kcount, Decimal) else None,
    )


def _priced(span: Span, rates: _Rates, source: str, model_ref: str) -> CostResult:
    total_in = span.input_tokens
    counts = (
        total_in - span.cached_input_tokens - span.cache_write_tokens,
        span.cached_input_tokens,
        span.cache_write_tokens,
        span.output_tokens - span.reasoning_tokens,
        span.reasoning_tokens,
    )
    breakdown = {name: _amount(price, n, total_in) for name, price, n in zip(TOKEN_CLASSES, rates[:5], counts)}
    if rates.requests_kcount is not None:
        breakdown["requests"] = rates.requests_kcount.scaleb(-3, _CTX)  # one request
    total = _ZERO
    for amount in breakdown.values():
        total = _CTX.add(total, amount)
    if total >= _STORABLE_COST:
        return CostResult(None, "", model_ref, breakdown, note="cost too large for the store")
    return CostResult(total, source, model_ref, breakdown)


def _amount(price: Decimal | TieredPrices, tokens: int, total_input_tokens: int) -> Decimal:
    if tokens <= 0:
        return _ZERO
    if isinstance(price, TieredPrices):
        # genai-prices' cliff tiers: crossing a threshold of total input reprices every token.
        rate = price.base
        for tier in reversed(price.tiers):
            if total_input_tokens > tier.start:
                rate = tier.price
                break
        price = rate
    return _CTX.multiply(price, Decimal(tokens)).scaleb(-6, _CTX)


def cache_info() -> dict[str, str]:
    """Hit/miss counters of the lookup caches, for the benchmark and debugging."""
    return {"rates": str(_table_rates.cache_info()), "lookup": str(_lookup.cache_info())}
