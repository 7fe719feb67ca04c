"""POST /api/v1/events: per-event validation, partial acceptance, limits, the JSON error shape."""

from __future__ import annotations

import gzip
import json
import time
import uuid

from llmscope.settings import Settings
from llmscope.storage import Store
from tests.ingest.conftest import make_client


def event(**overrides: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex,
        "timestamp": time.time_ns(),
        "operation": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 120,
        "output_tokens": 30,
        "latency_ms": 850,
        "status": "ok",
        **overrides,
    }


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


async def test_a_batch_with_bad_events_keeps_the_good_ones(ingest, tenant_keys) -> None:
    body = {"events": [event(), event(input_tokens=-1), event(), event(trace_id="xyz")]}
    r = await ingest.post("/api/v1/events", content=json.dumps(body), headers=auth(tenant_keys["a"]))
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["accepted"] == 2
    assert [bad["index"] for bad in result["rejected"]] == [1, 3]
    assert any("input_tokens" in e for e in result["rejected"][0]["errors"])
    assert any("trace_id" in e for e in result["rejected"][1]["errors"])


async def test_a_single_event_and_gzip_are_accepted(ingest, tenant_keys) -> None:
    r = await ingest.post("/api/v1/events", content=json.dumps(event()), headers=auth(tenant_keys["a"]))
    assert r.json() == {"accepted": 1, "rejected": []}
    body = gzip.compress(json.dumps({"events": [event(), event()]}).encode())
    r = await ingest.post("/api/v1/events", content=body, headers={**auth(tenant_keys["a"]), "content-encoding": "gzip"})
    assert r.json()["accepted"] == 2


async def test_bad_bodies_get_4xx_with_the_json_error_shape(ingest, tenant_keys) -> None:
    h = auth(tenant_keys["a"])
    cases = [
        (await ingest.post("/api/v1/events", content=b"{nope", headers=h), 400),
        (await ingest.post("/api/v1/events", content=b"[1, 2]", headers=h), 400),
        (await ingest.post("/api/v1/events", content=json.dumps({"events": []}), headers=h), 400),
        (await ingest.post("/api/v1/events", content=b"x", headers={**h, "content-type": "text/plain"}), 415),
        (await ingest.post("/api/v1/events", content=json.dumps(event()), headers={"content-type": "application/json"}), 401),
        (await ingest.post("/api/v1/events", content=json.dumps(event()), headers=auth(tenant_keys["a_read_only"])), 403),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"] and error["request_id"] == response.headers["x-request-id"]


async def test_too_many_events_or_bytes_get_413(settings: Settings, store: Store, tenant_keys) -> None:
    small = settings.model_copy(update={"events_max_count": 3, "events_max_bytes": 4000})
    client, producer = await make_client(small, store)
    async with client:
        r = await client.post(
            "/api/v1/events", content=json.dumps({"events": [event() for _ in range(4)]}), headers=auth(tenant_keys["a"])
        )
        assert r.status_code == 413 and "at most 3" in r.json()["error"]["message"]
        r = await client.post(
            "/api/v1/events", content=json.dumps(event(metadata={"k": "x" * 900}, tags=["t" * 200] * 20)),
            headers=auth(tenant_keys["a"]),
        )
        assert r.status_code == 413
    await producer.close()


async def test_events_endpoint_is_in_the_openapi_document(ingest) -> None:
    doc = (await ingest.get("/openapi.json")).json()
    schema = doc["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "events" in json.dumps(schema)
