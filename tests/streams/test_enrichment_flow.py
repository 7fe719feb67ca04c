"""Enrichment end to end: the API sets prices and PII policies, an in-process worker applies them to
spans arriving afterwards, and the raw spans table is read back to prove what was stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from llmscope.auth import create_key
from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage
from schemas.tenant_settings import OVERRIDE_SOURCE, PRICE_SOURCE, PiiPolicy
from streams.policy_cache import PolicyCache, load_policies
import streams.worker
from tests.conftest import query_client, running_worker
from tests.otlp_factory import kv, llm_span, request_of
from tests.streams.test_pii import redact_text
from tests.waiting import eventually

REFRESH = 0.2
TABLE_SOURCE = "genai-prices@0.2.3"
PII_TENANTS = {p: f"flow-pii-{p}" for p in ("mask", "drop", "hash", "detect")}


@pytest.fixture(scope="module")
def flow_settings(settings: Settings) -> Settings:
    # Own topics and consumer group: other worker tests' messages and offsets never mix with these.
    return settings.model_copy(update={
        "ingest_topic": "enrich-flow-ingest", "deadletter_topic": "enrich-flow-deadletter",
        "worker_name": "enrich-flow-worker", "policy_refresh_seconds": REFRESH, "worker_processes": 1,
    })


@pytest.fixture(scope="module")
async def worker(flow_settings: Settings, store: Store) -> AsyncIterator[PolicyCache]:
    """The worker, and the policy cache it enriches with (recorded as the worker makes it)."""
    made: list[PolicyCache] = []

    class Recorded(PolicyCache):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streams.worker, "PolicyCache", Recorded)
        async with running_worker(flow_settings, store):
            patch.undo()
            assert len(made) == 1, f"the worker made {len(made)} policy caches, expected one"
            yield made[0]


async def _policies_refreshed(policies: PolicyCache) -> None:
    """Return once the worker's policies were read after every change made before this call, so
    each span sent from now on is enriched with them. The worker asks `current()` once per batch
    and it re-reads once `policy_refresh_seconds` have passed; with no batch arriving, we ask."""
    changed = time.monotonic()

    async def read_since() -> bool:
        await policies.current()
        return policies.loaded_at > changed

    await eventually(read_since, timeout=10 * REFRESH + 10, interval=0.02)


@pytest.fixture(scope="module")
async def producer(flow_settings: Settings) -> AsyncIterator[IngestProducer]:
    p = IngestProducer(flow_settings)
    await p.connect()
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def api(flow_settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with query_client(flow_settings, store) as client:
        yield client


@pytest.fixture(scope="module")
def auth(store: Store) -> dict[str, dict[str, str]]:
    tenants = ["flow-prices", "flow-other", "flow-unknown", *PII_TENANTS.values()]
    return {t: {"authorization": f"Bearer {create_key(store, t, 'flow', {'read', 'admin'})}"} for t in tenants}


async def _send(producer: IngestProducer, tenant: str, spans: list[Any]) -> list[str]:
    await producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), request_of(spans).SerializeToString()))
    return [s.span_id.hex() for s in spans]


async def _stored(store: Store, tenant: str, span_ids: list[str], final: bool = True, timeout: float = 60.0) -> list[dict]:
    """The rows of these spans once all are stored, in the order asked for."""
    sql = (
        f"SELECT * FROM {store.database}.spans {'FINAL' if final else ''} "
        "WHERE tenant_id = {t:String} AND has(splitByChar(',', {ids:String}), span_id)"
    )
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["span_id"]: r for r in (await store.aquery(sql, {"t": tenant, "ids": ",".join(span_ids)})).to_dicts()}
        if len(rows) == len(span_ids):
            return [rows[i] for i in span_ids]
        assert time.monotonic() < deadline, f"{len(rows)}/{len(span_ids)} spans of {tenant} stored in {timeout}s"
        await asyncio.sleep(0.1)


def _gpt4o(**extra: object) -> Any:
    # 1000 input tokens of which 400 are cache reads, 200 output tokens.
    return llm_span(model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=200,
                    extra={"gen_ai.usage.cache_read.input_tokens": 400, **extra})


# genai-prices 0.2.3, gpt-4o: $2.50/M input, $1.25/M cache reads, $10/M output (USD per million tokens):
# (600 x 2.50 + 400 x 1.25 + 200 x 10) / 1e6 = (1500 + 500 + 2000) / 1e6 = 0.004.
TABLE_COST = Decimal("0.004")
OVERRIDE = {"provider": "openai", "model": "gpt-4o", "input_mtok": "1", "output_mtok": 2, "cached_input_mtok": "0.5"}
# (600 x 1 + 400 x 0.5 + 200 x 2) / 1e6 = (600 + 200 + 400) / 1e6 = 0.0012.
OVERRIDE_COST = Decimal("0.0012")


async def test_a_price_override_applies_to_spans_arriving_after_it_and_not_before(worker, producer, api, auth, store) -> None:
    assert TABLE_SOURCE == PRICE_SOURCE  # the pinned table the hand-computed costs below come from
    [before] = await _stored(store, "flow-prices", await _send(producer, "flow-prices", [_gpt4o()]))
    assert (before["cost_usd"], before["price_source"]) == (TABLE_COST, TABLE_SOURCE)

    r = await api.put("/api/v1/prices", json=OVERRIDE, headers=auth["flow-prices"])
    assert r.status_code == 200, r.text
    await _policies_refreshed(worker)
    [after] = await _stored(store, "flow-prices", await _send(producer, "flow-prices", [_gpt4o()]))
    [other] = await _stored(store, "flow-other", await _send(producer, "flow-other", [_gpt4o()]))
    assert (after["cost_usd"], after["price_source"]) == (OVERRIDE_COST, OVERRIDE_SOURCE)
    assert (other["cost_usd"], other["price_source"]) == (TABLE_COST, TABLE_SOURCE)  # another tenant: no override
    [again] = await _stored(store, "flow-prices", [before["span_id"]], final=False)
    assert (again["cost_usd"], again["price_source"]) == (TABLE_COST, TABLE_SOURCE)  # stored spans keep theirs

    r = await api.delete("/api/v1/prices", params={"model": "gpt-4o", "provider": "openai"}, headers=auth["flow-prices"])
    assert r.status_code == 200, r.text
    await _policies_refreshed(worker)
    [removed] = await _stored(store, "flow-prices", await _send(producer, "flow-prices", [_gpt4o()]))
    assert (removed["cost_usd"], removed["price_source"]) == (TABLE_COST, TABLE_SOURCE)


async def test_an_unknown_model_is_costed_null_and_listed(worker, producer, api, auth, store) -> None:
    unknown = [llm_span(model="acme-frontier-9000", provider="acme", input_tokens=50 + i) for i in range(3)]
    ids = await _send(producer, "flow-unknown", unknown[:2])
    ids += await _send(producer, "flow-unknown", [unknown[2], _gpt4o()])
    rows = await _stored(store, "flow-unknown", ids)
    assert [(r["model"], r["cost_usd"], r["price_source"]) for r in rows] == [
        ("acme-frontier-9000", None, ""), ("acme-frontier-9000", None, ""), ("acme-frontier-9000", None, ""),
        ("gpt-4o", TABLE_COST, TABLE_SOURCE),
    ]
    r = await api.get("/api/v1/prices/unknown-models", headers=auth["flow-unknown"])
    assert r.status_code == 200, r.text
    assert [(m["provider"], m["model"], m["spans"]) for m in r.json()["data"]] == [("acme", "acme-frontier-9000", 3)]


EMAIL = "alice@example.com"
PROMPT = ("Hi, I'm Alice Martin. Please update my account: email alice@example.com, card 4111 1111 1111 1111 "
          "(exp 12/27), and call me on (415) 555-2671 after 5pm.")
MESSAGES = orjson.dumps([
    {"role": "system", "content": "You are a billing assistant."},
    {"role": "user", "content": "My new card is 5555-5555-5555-4444 and my phone is +1 415 555 2671. Reply to alice@example.com."},
]).decode()
USER_EVENT = "Ship it to alice@example.com and text me at 415-555-2671."
EXCEPTION = "PaymentError: card 4111111111111111 declined for alice@example.com"
STATUS = "Upstream 402 for alice@example.com: card 4111111111111111 declined; callback 415.555.2671"
# One e-mail in each of the five fields; a card in all but the user event; a phone in all but the exception.
COUNTS = {"email": 5, "card": 4, "phone": 4}
RAW_VALUES = ["alice@example.com", "4111 1111 1111 1111", "4111111111111111", "5555-5555-5555-4444",
              "5555555555554444", "(415) 555-2671", "415 555 2671", "415-555-2671", "415.555.2671"]
RAW_DIGITS = ["4111111111111111", "5555555555554444", "4155552671"]  # whatever the separators


def _pii_span() -> Any:
    span = llm_span(extra={"gen_ai.prompt": PROMPT, "gen_ai.input.messages": MESSAGES, "app.route": "/billing/update"})
    for name, key, text in (("gen_ai.user.message", "content", USER_EVENT), ("exception", "exception.message", EXCEPTION)):
        event = span.events.add(time_unix_nano=span.start_time_unix_nano + 1000, name=name)
        event.attributes.append(kv(key, text))
    span.status.code, span.status.message = span.status.STATUS_CODE_ERROR, STATUS
    return span


@pytest.fixture(scope="module")
async def pii_rows(worker, producer, api, auth, store) -> dict[str, list[dict]]:
    """Raw rows (no FINAL) of two PII spans per policy, set through the API before they were sent."""
    for policy, tenant in PII_TENANTS.items():
        r = await api.put("/api/v1/settings/pii", json={"policy": policy}, headers=auth[tenant])
        assert r.status_code == 200 and r.json()["data"] == {"policy": policy, "source": "tenant"}
    await _policies_refreshed(worker)
    sent = {t: [*await _send(producer, t, [_pii_span()]), *await _send(producer, t, [_pii_span()])] for t in PII_TENANTS.values()}
    return {policy: await _stored(store, t, sent[t], final=False) for policy, t in PII_TENANTS.items()}


def _event(row: dict, name: str) -> dict[str, str]:
    [event] = [e for e in row["events"] if e["name"] == name]
    return _as_dict(event["attributes"])


def _as_dict(value: Any) -> dict[str, str]:
    return value if isinstance(value, dict) else {i["key"]: i["value"] for i in value or []}


async def test_redacted_values_never_reach_clickhouse(pii_rows, store) -> None:
    columns = (await store.aquery(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'spans'", {"db": store.database}
    ))["name"].to_list()
    everything = "arrayStringConcat([" + ", ".join(f"toString(`{c}`)" for c in columns) + "], '\\n')"
    text = "concat(toString(attributes), toString(events), status_message, toString(resource_attributes), name)"
    leaks = " OR ".join(
        [f"positionCaseInsensitive({everything}, {{v{i}:String}}) > 0" for i in range(len(RAW_VALUES))]
        + [f"position(replaceRegexpAll({text}, '[^0-9]', ''), {{d{i}:String}}) > 0" for i in range(len(RAW_DIGITS))]
    )
    params = {f"v{i}": v for i, v in enumerate(RAW_VALUES)} | {f"d{i}": v for i, v in enumerate(RAW_DIGITS)}

    async def leaking(policy: str) -> int:
        sql = f"SELECT count() AS n FROM {store.database}.spans WHERE tenant_id = {{t:String}} AND ({leaks})"
        return int((await store.aquery(sql, {**params, "t": PII_TENANTS[policy]}))["n"][0])

    assert {p: await leaking(p) for p in ("mask", "drop", "hash")} == {"mask": 0, "drop": 0, "hash": 0}
    assert await leaking("detect") == 2  # the same query does see raw values where they are kept
    for policy in ("mask", "drop", "hash"):
        for row in pii_rows[policy]:
            blob = repr(row).lower()
            assert not [v for v in RAW_VALUES if v in blob], policy


async def test_mask_replaces_each_value_with_its_kind(pii_rows) -> None:
    for row in pii_rows["mask"]:
        assert row["pii_counts"] == COUNTS
        attrs = _as_dict(row["attributes"])
        assert attrs["gen_ai.prompt"] == (
            "Hi, I'm Alice Martin. Please update my account: email [EMAIL], card [CARD] (exp 12/27), "
            "and call me on [PHONE] after 5pm."
        )
        assert orjson.loads(attrs["gen_ai.input.messages"])[1]["content"] == (
            "My new card is [CARD] and my phone is [PHONE]. Reply to [EMAIL]."
        )
        assert _event(row, "gen_ai.user.message") == {"content": "Ship it to [EMAIL] and text me at [PHONE]."}
        assert _event(row, "exception") == {"exception.message": "PaymentError: card [CARD] declined for [EMAIL]"}
        assert row["status_message"] == "Upstream 402 for [EMAIL]: card [CARD] declined; callback [PHONE]"
        assert attrs["app.route"] == "/billing/update" and row["model"] == "gpt-4o"


async def test_drop_removes_every_field_holding_pii(pii_rows) -> None:
    for row in pii_rows["drop"]:
        assert row["pii_counts"] == COUNTS
        attrs = _as_dict(row["attributes"])
        assert "gen_ai.prompt" not in attrs and "gen_ai.input.messages" not in attrs
        assert _event(row, "gen_ai.user.message") == {} and _event(row, "exception") == {}
        assert row["status_message"] == ""
        assert attrs["app.route"] == "/billing/update" and attrs["gen_ai.operation.name"] == "chat"


async def test_hash_gives_stable_keyed_tokens(pii_rows, store, settings) -> None:
    key = load_policies(store, settings).for_tenant(PII_TENANTS["hash"]).hash_key
    email = redact_text(EMAIL, PiiPolicy.HASH, key)[0]
    card = redact_text("4111111111111111", PiiPolicy.HASH, key)[0]
    phone = redact_text("+1 415 555 2671", PiiPolicy.HASH, key)[0]
    assert email.startswith("[EMAIL:") and card.startswith("[CARD:") and phone.startswith("[PHONE:")
    first, second = pii_rows["hash"]
    for row in (first, second):
        assert row["pii_counts"] == COUNTS
        attrs = _as_dict(row["attributes"])
        # The same card and phone written differently hash alike: tokens are of the canonical value.
        assert attrs["gen_ai.prompt"] == (
            f"Hi, I'm Alice Martin. Please update my account: email {email}, card {card} (exp 12/27), "
            f"and call me on {phone} after 5pm."
        )
        assert _event(row, "gen_ai.user.message") == {"content": f"Ship it to {email} and text me at {phone}."}
        assert row["status_message"] == f"Upstream 402 for {email}: card {card} declined; callback {phone}"
    assert (_as_dict(first["attributes"]), first["status_message"]) == (_as_dict(second["attributes"]), second["status_message"])
    other = load_policies(store, settings).for_tenant(PII_TENANTS["mask"]).hash_key
    assert redact_text(EMAIL, PiiPolicy.HASH, other)[0] != email  # keyed per tenant: no join across tenants


async def test_detect_keeps_the_text_and_counts(pii_rows) -> None:
    for row in pii_rows["detect"]:
        assert row["pii_counts"] == COUNTS
        attrs = _as_dict(row["attributes"])
        assert (attrs["gen_ai.prompt"], attrs["gen_ai.input.messages"]) == (PROMPT, MESSAGES)
        assert _event(row, "gen_ai.user.message") == {"content": USER_EVENT}
        assert _event(row, "exception") == {"exception.message": EXCEPTION}
        assert row["status_message"] == STATUS


async def test_a_tenant_without_a_policy_gets_the_settings_default(worker, producer, api, auth, store, flow_settings) -> None:
    tenant = "flow-prices"  # never given a PII policy
    r = await api.get("/api/v1/settings/pii", headers=auth[tenant])
    assert r.json()["data"] == {"policy": flow_settings.pii_policy, "source": "default"}
    assert flow_settings.pii_policy == "mask"
    [row] = await _stored(store, tenant, await _send(producer, tenant, [_pii_span()]), final=False)
    assert row["pii_counts"] == COUNTS and EMAIL not in repr(row)
