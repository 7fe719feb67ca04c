"""Prices: a tenant's per-model price overrides and the models its spans could not be priced for."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmscope.errors import NotFound
from query.deps import Admin, Reader, StoreDep, TimeRange
from query.envelope import Envelope
from schemas.tenant_settings import (
    PRICE_COLUMNS,
    PRICE_SOURCE,
    override_key,
    read_price_overrides,
    write_price_override,
)

router = APIRouter(prefix="/api/v1/prices", tags=["prices"])

UNKNOWN_LOOKBACK = timedelta(days=30)
# Bounds of the price_overrides columns, Decimal(38, 12): checked here so a bad value is a 400, not a store error.
Price = Annotated[Decimal, Field(ge=0, max_digits=38, decimal_places=12, description="USD per million tokens.")]
# Names are matched against span attributes; control characters are never part of one.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
ProviderName = Annotated[
    str | None, Field(max_length=100, pattern=PRINTABLE, description="Provider id; omit to match any provider.")
]
ModelName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=PRINTABLE, description="Model id or family, case-insensitive.")
]


class PriceIn(BaseModel):
    """Prices as JSON numbers or decimal strings. Absent cache prices bill as input, reasoning as output."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = None
    model: ModelName
    input_mtok: Price
    output_mtok: Price
    cached_input_mtok: Price | None = None
    cache_write_mtok: Price | None = None
    reasoning_mtok: Price | None = None

    @field_validator("model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class PriceOverrideOut(BaseModel):
    """Stored with provider and model canonicalised (as the worker matches them); prices as exact decimal strings."""

    provider: str | None
    model: str
    input_mtok: str
    output_mtok: str
    cached_input_mtok: str | None
    cache_write_mtok: str | None
    reasoning_mtok: str | None
    updated_at: datetime


class OverrideResponse(Envelope[PriceOverrideOut]):
    pass


class PriceTable(BaseModel):
    price_table: str = Field(description="The bundled price table spans are costed from without an override.")
    overrides: list[PriceOverrideOut]


class PricesResponse(Envelope[PriceTable]):
    pass


class UnknownModel(BaseModel):
    provider: str
    model: str
    spans: int
    first_seen: datetime
    last_seen: datetime


class UnknownModelsResponse(Envelope[list[UnknownModel]]):
    pass


def _fixed(value: Decimal) -> str:
    # Fixed-point, without the column's trailing zeros; str() could say 1E+1.
    return format(value.normalize(), "f")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else _fixed(value)


def _out(row: dict[str, Any]) -> PriceOverrideOut:
    return PriceOverrideOut(
        provider=row["provider"] or None,
        model=row["model"],
        input_mtok=_fixed(row["input_mtok"]),
        output_mtok=_fixed(row["output_mtok"]),
        cached_input_mtok=_text(row["cached_input_mtok"]),
        cache_write_mtok=_text(row["cache_write_mtok"]),
        reasoning_mtok=_text(row["reasoning_mtok"]),
        updated_at=row["updated_at"],
    )


@router.get("", response_model=PricesResponse, summary="The price table in use and this tenant's overrides")
async def list_prices(principal: Reader, store: StoreDep) -> PricesResponse:
    rows = await asyncio.to_thread(read_price_overrides, store, principal.tenant_id)
    return PricesResponse(data=PriceTable(price_table=PRICE_SOURCE, overrides=[_out(r) for r in rows]))


@router.put(
    "",
    response_model=OverrideResponse,
    summary="Set a price override (admin)",
    description="Applies to spans the worker processes after its next policy refresh; stored spans keep their cost.",
)
async def put_price(body: PriceIn, principal: Admin, store: StoreDep) -> OverrideResponse:
    key = override_key(body.provider, body.model)
    prices = body.model_dump(include=set(PRICE_COLUMNS))
    updated_at = await asyncio.to_thread(write_price_override, store, principal.tenant_id, key, prices, False)
    return OverrideResponse(data=_out({"provider": key[0], "model": key[1], "updated_at": updated_at, **prices}))


@router.delete("", response_model=OverrideResponse, summary="Remove a price override (admin); returns it")
async def delete_price(
    principal: Admin,
    store: StoreDep,
    model: Annotated[str, Query(min_length=1, max_length=200, pattern=PRINTABLE)],
    provider: Annotated[str | None, Query(max_length=100, pattern=PRINTABLE, description="As when it was set.")] = None,
) -> OverrideResponse:
    key = override_key(provider, model)
    found = await asyncio.to_thread(read_price_overrides, store, principal.tenant_id, key)
    if not found:
        where = f" from provider {key[0]!r}" if key[0] else " without a provider"
        raise NotFound(f"no price override for model {key[1]!r}{where}")
    # The tombstone keeps the prices: the non-null columns need values, and it records what was removed.
    await asyncio.to_thread(write_price_override, store, principal.tenant_id, key, found[0], True)
    return OverrideResponse(data=_out(found[0]))


def lookback(
    start: Annotated[datetime | None, Query(description="Inclusive start; default 30 days before end.")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive end; default now.")] = None,
) -> TimeRange:
    window = TimeRange(start, end)  # TimeRange also holds both ends to the spans table's range
    if start is None:
        window = TimeRange(window.end - UNKNOWN_LOOKBACK, window.end)
    return window


@router.get(
    "/unknown-models",
    response_model=UnknownModelsResponse,
    summary="Models whose spans have usage but no known price (cost null), most spans first",
)
async def unknown_models(
    principal: Reader,
    store: StoreDep,
    window: Annotated[TimeRange, Depends(lookback)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UnknownModelsResponse:
    sql = f"""
        SELECT provider, model, count() AS spans, min(start_time) AS first_seen, max(start_time) AS last_seen
        FROM {store.database}.spans FINAL
        WHERE tenant_id = {{tenant:String}}
          AND start_time >= {{start:DateTime64(9, 'UTC')}} AND start_time < {{end:DateTime64(9, 'UTC')}}
          -- usage_reported: a span that stated its usage as all zeros has usage too (it costs $0 once priced).
          AND model != '' AND cost_usd IS NULL AND usage_reported = 1
          -- Counts that break their subset rules are unpriced for that reason (streams/stages/cost.py), not the model.
          AND cached_input_tokens + cache_write_tokens <= input_tokens AND reasoning_tokens <= output_tokens
        GROUP BY provider, model
        ORDER BY spans DESC, provider, model
        LIMIT {{limit:UInt32}}
    """
    params = {"tenant": principal.tenant_id, **window.params(), "limit": limit}
    rows = (await store.aquery(sql, params)).to_dicts()
    return UnknownModelsResponse(data=[UnknownModel(**r) for r in rows])
