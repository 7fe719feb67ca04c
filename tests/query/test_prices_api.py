"""The prices API over the real chDB store: overrides (admin), validation, and unknown models."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest

from llmscope.storage import Store
from schemas.tenant_settings import PRICE_SOURCE, PriceOverride
from streams.policy_cache import load_policies
from streams.stages.enrich import EnrichmentPolicy, enrich
from streams.stages.normalise import normalise
from tests.conftest import bearer
from tests.otlp_factory import llm_span, request_of

NOW = time.time_ns()
HOUR = 3600 * 1_000_000_000


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, dict[str, str]]:
    return {
        "a": bearer(store, "prices-a", "admin", "read"),
        "a_read": bearer(store, "prices-a", "read"),
        "b": bearer(store, "prices-b", "admin", "read"),
        "c": bearer(store, "prices-c", "admin", "read"),
        "u": bearer(store, "prices-unknown", "read"),
    }


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code and body["request_id"]
    return str(body["message"])


async def test_price_table_is_named_and_a_new_tenant_has_no_overrides(api, keys) -> None:
    r = await api.get("/api/v1/prices", headers=keys["c"])
    assert r.status_code == 200
    assert r.json() == {"data": {"price_table": PRICE_SOURCE, "overrides": []}, "next_cursor": None}
    assert PRICE_SOURCE == "genai-prices@0.2.3"


async def test_put_stores_exact_decimals_canonically_and_the_worker_loads_them(api, keys, store, settings) -> None:
    body = {"provider": "OpenAI", "model": " GPT-4o ", "input_mtok": 1.1, "output_mtok": "4.000000000001",
            "cached_input_mtok": "0.55"}
    r = await api.put("/api/v1/prices", json=body, headers=keys["a"])
    assert r.status_code == 200, r.text
    stored = r.json()["data"]
    assert r.json()["next_cursor"] is None
    expected = {"provider": "openai", "model": "gpt-4o", "input_mtok": "1.1", "output_mtok": "4.000000000001",
                "cached_input_mtok": "0.55", "cache_write_mtok": None, "reasoning_mtok": None}
    assert {k: stored[k] for k in expected} == expected
    listed = (await api.get("/api/v1/prices", headers=keys["a_read"])).json()["data"]["overrides"]
    assert [{k: o[k] for k in expected} for o in listed] == [expected]
    # What the worker reads on its next refresh (streams.policy_cache) is the same override, exactly.
    assert load_policies(store, settings).prices["prices-a"] == [
        PriceOverride(model="gpt-4o", provider="openai", input_mtok=Decimal("1.1"),
                      output_mtok=Decimal("4.000000000001"), cached_input_mtok=Decimal("0.55"))
    ]


async def test_a_second_put_for_the_same_model_replaces_the_first(api, keys) -> None:
    first = {"provider": "anthropic", "model": "claude-3-5-sonnet", "input_mtok": 3, "output_mtok": 15}
    assert (await api.put("/api/v1/prices", json=first, headers=keys["b"])).status_code == 200
    second = {**first, "model": "Claude-3-5-Sonnet", "input_mtok": "2.5", "reasoning_mtok": 20}
    assert (await api.put("/api/v1/prices", json=second, headers=keys["b"])).status_code == 200
    listed = (await api.get("/api/v1/prices", headers=keys["b"])).json()["data"]["overrides"]
    assert len(listed) == 1
    assert (listed[0]["input_mtok"], listed[0]["output_mtok"], listed[0]["reasoning_mtok"]) == ("2.5", "15", "20")


async def test_overrides_are_per_tenant(api, keys) -> None:
    await api.put("/api/v1/prices", json={"model": "tenant-b-only", "input_mtok": 1, "output_mtok": 1}, headers=keys["b"])
    listed = (await api.get("/api/v1/prices", headers=keys["a"])).json()["data"]["overrides"]
    assert "tenant-b-only" not in {o["model"] for o in listed}
    r = await api.delete("/api/v1/prices", params={"model": "tenant-b-only"}, headers=keys["a"])
    _error(r, 404, "not_found")


async def test_writes_need_the_admin_scope_and_reads_need_a_key(api, keys) -> None:
    body = {"model": "gpt-4o", "input_mtok": 1, "output_mtok": 1}
    assert "admin" in _error(await api.put("/api/v1/prices", json=body, headers=keys["a_read"]), 403, "forbidden")
    r = await api.delete("/api/v1/prices", params={"model": "gpt-4o", "provider": "openai"}, headers=keys["a_read"])
    _error(r, 403, "forbidden")
    _error(await api.get("/api/v1/prices"), 401, "unauthenticated")
    _error(await api.get("/api/v1/prices/unknown-models"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "change",
    [
        {"input_mtok": -1},
        {"output_mtok": "-0.5"},
        {"input_mtok": "NaN"},
        {"input_mtok": "Infinity"},
        {"input_mtok": "cheap"},
        {"input_mtok": True},
        {"input_mtok": None},
        {"input_mtok": "0.0000000000001"},  # 13 decimal places: the column keeps 12
        {"input_mtok": "1" + "0" * 26},  # beyond Decimal(38, 12)
        {"cached_input_mtok": -0.1},
        {"model": ""},
        {"model": "   "},
        {"model": "m" * 201},
        {"provider": "p" * 101},
        {"model": "gpt-4o\tmini"},  # control characters are in no model name
        {"provider": "open\nai"},
        {"input_price": 1},  # a misspelt field is an error, not silently ignored
    ],
)
async def test_bad_values_are_400_and_store_nothing(api, keys, change: dict[str, Any]) -> None:
    body = {"model": "validation-model", "input_mtok": 1, "output_mtok": 1, **change}
    _error(await api.put("/api/v1/prices", json=body, headers=keys["c"]), 400, "bad_request")
    listed = (await api.get("/api/v1/prices", headers=keys["c"])).json()["data"]["overrides"]
    assert "validation-model" not in {o["model"] for o in listed}


async def test_missing_fields_and_non_json_are_400(api, keys) -> None:
    msg = _error(await api.put("/api/v1/prices", json={"model": "x"}, headers=keys["c"]), 400, "bad_request")
    assert "input_mtok" in msg
    r = await api.put("/api/v1/prices", content=b"{not json", headers={**keys["c"], "content-type": "application/json"})
    _error(r, 400, "bad_request")
    _error(await api.delete("/api/v1/prices", headers=keys["c"]), 400, "bad_request")  # model is required
    r = await api.delete("/api/v1/prices", params={"model": "a\tb"}, headers=keys["c"])
    _error(r, 400, "bad_request")


async def test_a_model_exactly_200_characters_long_is_accepted(api, keys) -> None:
    model = "m" * 200
    r = await api.put("/api/v1/prices", json={"model": model, "input_mtok": 0, "output_mtok": 0}, headers=keys["c"])
    assert r.status_code == 200 and r.json()["data"]["model"] == model
    assert (await api.delete("/api/v1/prices", params={"model": model}, headers=keys["c"])).status_code == 200


async def test_delete_removes_only_the_named_override_and_a_second_delete_is_404(api, keys, store, settings) -> None:
    for provider in ("mistral", None):
        body = {"provider": provider, "model": "mistral-large", "input_mtok": 2, "output_mtok": 6}
        assert (await api.put("/api/v1/prices", json=body, headers=keys["c"])).status_code == 200
    r = await api.delete("/api/v1/prices", params={"model": "Mistral-Large", "provider": "Mistral"}, headers=keys["c"])
    assert r.status_code == 200, r.text
    assert (r.json()["data"]["provider"], r.json()["data"]["model"], r.json()["data"]["input_mtok"]) == (
        "mistral", "mistral-large", "2")
    listed = (await api.get("/api/v1/prices", headers=keys["c"])).json()["data"]["overrides"]
    assert [(o["provider"], o["model"]) for o in listed] == [(None, "mistral-large")]
    assert [o.provider for o in load_policies(store, settings).prices["prices-c"]] == [None]
    r = await api.delete("/api/v1/prices", params={"model": "mistral-large", "provider": "mistral"}, headers=keys["c"])
    assert "mistral-large" in _error(r, 404, "not_found")
    assert (await api.delete("/api/v1/prices", params={"model": "mistral-large"}, headers=keys["c"])).status_code == 200
    assert "prices-c" not in load_policies(store, settings).prices
    # A deleted override can be set again.
    body = {"model": "mistral-large", "input_mtok": 1, "output_mtok": 1}
    assert (await api.put("/api/v1/prices", json=body, headers=keys["c"])).status_code == 200
    assert len((await api.get("/api/v1/prices", headers=keys["c"])).json()["data"]["overrides"]) == 1


def _rows(tenant: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans enriched as the worker would (no overrides), as table rows."""
    spans = normalise(request_of([llm_span(**s) for s in specs]), tenant)
    for span in spans:
        result = enrich(span, EnrichmentPolicy())
        span.price_source = result.price_source
    return [s.to_row(NOW) for s in spans]


@pytest.fixture(scope="module")
async def seeded_unknown(store: Store) -> None:
    t = "prices-unknown"
    specs = (
        [{"model": "acme-frontier-9000", "provider": "acme", "start_ns": NOW - (i + 1) * HOUR} for i in range(3)]
        + [{"model": "zeta-mini", "provider": "zeta", "start_ns": NOW - 48 * HOUR}]  # outside a 24 h window
        + [{"model": "gpt-4o", "provider": "openai"}]  # priced
        + [{"model": "no-usage-model", "provider": "acme", "input_tokens": 0, "output_tokens": 0}]  # nothing to price
        + [{"model": "gpt-4o", "provider": "openai"}]
    )
    rows = _rows(t, specs) + _rows("prices-a", [{"model": "acme-frontier-9000", "provider": "acme"}])
    # Known model, inconsistent counts (a row stored before the normaliser completed raw Anthropic
    # inputs; it now adds a cache part larger than its total to the total): unpriced, but not for
    # want of a price.
    rows[6] |= {"cached_input_tokens": 500, "cost_usd": None, "price_source": ""}
    rows[5] |= {"usage_reported": 0}  # said nothing about its usage (llm_span states its counts, here 0)
    # Only the first five have usage and a consistent count; of those only gpt-4o has a price.
    assert [r["cost_usd"] is None for r in rows] == [True, True, True, True, False, True, True, True]
    await asyncio.to_thread(store.insert_rows, f"{store.database}.spans", rows, "seed-prices-unknown")


async def test_unknown_models_are_counted_and_listed_most_spans_first(api, keys, seeded_unknown) -> None:
    r = await api.get("/api/v1/prices/unknown-models", headers=keys["u"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    assert [(m["provider"], m["model"], m["spans"]) for m in body["data"]] == [
        ("acme", "acme-frontier-9000", 3), ("zeta", "zeta-mini", 1)]
    first = body["data"][0]
    assert first["first_seen"] < first["last_seen"]


async def test_a_model_whose_spans_state_zero_usage_is_unknown_but_one_without_usage_is_not(api, store) -> None:
    rows = _rows("prices-zero", [{"model": "zero-usage-model", "provider": "acme", "input_tokens": 0, "output_tokens": 0},
                                 {"model": "silent-model", "provider": "acme", "input_tokens": 0, "output_tokens": 0}])
    rows[1] |= {"usage_reported": 0}
    await asyncio.to_thread(store.insert_rows, f"{store.database}.spans", rows, "seed-prices-zero")
    r = await api.get("/api/v1/prices/unknown-models", headers=bearer(store, "prices-zero", "read"))
    assert [m["model"] for m in r.json()["data"]] == ["zero-usage-model"]


async def test_unknown_models_honour_the_time_range_and_limit(api, keys, seeded_unknown) -> None:
    day_ago = int(NOW / 1e9) - 86400
    r = await api.get("/api/v1/prices/unknown-models", params={"start": day_ago}, headers=keys["u"])
    assert [m["model"] for m in r.json()["data"]] == ["acme-frontier-9000"]
    r = await api.get("/api/v1/prices/unknown-models", params={"limit": 1}, headers=keys["u"])
    assert [m["model"] for m in r.json()["data"]] == ["acme-frontier-9000"]
    r = await api.get("/api/v1/prices/unknown-models", params={"end": day_ago}, headers=keys["u"])
    assert [m["model"] for m in r.json()["data"]] == ["zeta-mini"]  # default start: 30 days before end
    r = await api.get("/api/v1/prices/unknown-models", params={"start": day_ago, "end": day_ago - 60}, headers=keys["u"])
    _error(r, 400, "bad_request")
    _error(await api.get("/api/v1/prices/unknown-models", params={"limit": 0}, headers=keys["u"]), 400, "bad_request")
    for bounds in ({"start": "0502-10-29T13:36:19Z"}, {"end": "6518-12-09T12:24:01Z"}, {"end": "1900-01-05T00:00:00Z"}):
        r = await api.get("/api/v1/prices/unknown-models", params=bounds, headers=keys["u"])
        assert "between" in _error(r, 400, "bad_request")  # beyond DateTime64(9), not a 500


async def test_a_model_with_a_backslash_can_be_deleted(api, keys, store) -> None:
    body = {"model": "acme\\v2", "input_mtok": 1, "output_mtok": 1}
    assert (await api.put("/api/v1/prices", json=body, headers=keys["c"])).status_code == 200
    r = await api.delete("/api/v1/prices", params={"model": "acme\\v2"}, headers=keys["c"])
    assert r.status_code == 200, r.text  # today: 404, the parameter arrives as `acme` + vertical tab + `2`
    assert store.query("SELECT {v:String} AS v", {"v": "a\\b"})["v"][0] == "a\\b"


async def test_the_openapi_document_describes_the_prices_api(api) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert {"get", "put", "delete"} <= set(doc["paths"]["/api/v1/prices"])
    assert "/api/v1/prices/unknown-models" in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert {"input_mtok", "output_mtok", "cached_input_mtok"} <= set(schemas["PriceIn"]["properties"])
    assert set(schemas["PriceIn"]["required"]) == {"model", "input_mtok", "output_mtok"}
    assert "UnknownModel" in schemas and "PricesResponse" in schemas
