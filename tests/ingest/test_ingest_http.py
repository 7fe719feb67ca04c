"""The OTLP/HTTP contract of /v1/traces against the real broker: statuses, bodies, content types."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ingest.app import create_ingest_app
from llmscope.auth import KeyResolver, create_key
from llmscope.kafka import IngestProducer
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.messages import FORMAT_OTLP_TRACES, HEADER_FORMAT, HEADER_TENANT
from schemas.rate_limits import RateLimits
from tests.ingest.conftest import MakeLimiter, make_client
from tests.otlp_factory import llm_span, request_of

NOW = time.time_ns()
PB = {"content-type": "application/x-protobuf"}
JS = {"content-type": "application/json"}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _topic_messages(settings: Settings) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.ingest_topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while [tp for tp in tps if (await consumer.position(tp)) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def test_protobuf_export_is_acknowledged_after_it_is_in_the_broker(ingest, tenant_keys, settings) -> None:
    req = request_of([llm_span(), llm_span()])
    r = await ingest.post("/v1/traces", content=req.SerializeToString(), headers={**PB, **auth(tenant_keys["a"])})
    assert r.status_code == 200, r.content
    assert r.headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert not resp.HasField("partial_success")
    ids = {s.span_id for s in req.resource_spans[0].scope_spans[0].spans}
    found = set()
    for record in await _topic_messages(settings):
        headers = dict(record.headers)
        # Other tests share the topic (some write poison on purpose): only tenant-a's traces count.
        if headers.get(HEADER_FORMAT) != FORMAT_OTLP_TRACES.encode() or headers.get(HEADER_TENANT) != b"tenant-a":
            continue
        sent = ExportTraceServiceRequest.FromString(record.value)
        spans = {s.span_id for rs in sent.resource_spans for ss in rs.scope_spans for s in ss.spans}
        if spans & ids:
            found |= spans & ids
    assert found == ids


async def test_json_export_with_uppercase_hex_ids_gets_a_json_answer(ingest, tenant_keys) -> None:
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                "name": "chat", "kind": 3, "startTimeUnixNano": str(NOW),
                "endTimeUnixNano": NOW + 500_000_000, "unknownField": 1,
            }]}],
        }]
    }
    r = await ingest.post("/v1/traces", content=json.dumps(body), headers={**JS, **auth(tenant_keys["a"])})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {}


async def test_one_bad_span_gets_partial_success_not_an_error(ingest, tenant_keys) -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "ok",
         "startTimeUnixNano": str(NOW), "endTimeUnixNano": str(NOW + 1)},
        {"traceId": "not-hex", "spanId": "eee19b7ec3c1b175", "name": "bad",
         "startTimeUnixNano": str(NOW), "endTimeUnixNano": str(NOW + 1)},
    ]}]}]}
    r = await ingest.post("/v1/traces", content=json.dumps(body), headers={**JS, **auth(tenant_keys["a"])})
    assert r.status_code == 200
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "trace_id" in partial["errorMessage"]


async def test_gzip_and_deflate_bodies_are_accepted(ingest, tenant_keys) -> None:
    raw = request_of([llm_span()]).SerializeToString()
    for encoding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        headers = {**PB, **auth(tenant_keys["a"]), "content-encoding": encoding}
        r = await ingest.post("/v1/traces", content=body, headers=headers)
        assert r.status_code == 200, (encoding, r.content)


async def test_chunked_request_body_is_accepted(ingest, tenant_keys) -> None:
    raw = request_of([llm_span() for _ in range(20)]).SerializeToString()

    async def chunks():
        for i in range(0, len(raw), 100):
            yield raw[i : i + 100]

    r = await ingest.post("/v1/traces", content=chunks(), headers={**PB, **auth(tenant_keys["a"])})
    assert r.status_code == 200


async def test_gzip_body_over_limit_after_decompression_gets_413(settings, store, tenant_keys) -> None:
    small = settings.model_copy(update={"max_body_bytes": 10_000})
    client, producer = await make_client(small, store)
    bomb = gzip.compress(b"\0" * 5_000_000)
    assert len(bomb) < 10_000
    async with client:
        r = await client.post(
            "/v1/traces", content=bomb, headers={**PB, **auth(tenant_keys["a"]), "content-encoding": "gzip"}
        )
        assert r.status_code == 413
        assert "10000 bytes" in status_pb2.Status.FromString(r.content).message
        r = await client.post("/v1/traces", content=b"x" * 20_000, headers={**JS, **auth(tenant_keys["a"])})
        assert r.status_code == 413 and "exceeds" in r.json()["message"]
    await producer.close()


async def test_unsupported_content_type_gets_415(ingest, tenant_keys) -> None:
    r = await ingest.post("/v1/traces", content=b"hello", headers={"content-type": "text/plain", **auth(tenant_keys["a"])})
    assert r.status_code == 415
    assert "application/x-protobuf" in status_pb2.Status.FromString(r.content).message


async def test_unknown_content_encoding_gets_415(ingest, tenant_keys) -> None:
    headers = {**PB, **auth(tenant_keys["a"]), "content-encoding": "br"}
    r = await ingest.post("/v1/traces", content=b"abc", headers=headers)
    assert r.status_code == 415


async def test_garbage_protobuf_gets_400_with_a_status_body(ingest, tenant_keys) -> None:
    r = await ingest.post("/v1/traces", content=b"\xff\xff\xff\x01garbage", headers={**PB, **auth(tenant_keys["a"])})
    assert r.status_code == 400
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "protobuf" in status.message


async def test_invalid_json_gets_400_json_status(ingest, tenant_keys) -> None:
    r = await ingest.post("/v1/traces", content=b"{not json", headers={**JS, **auth(tenant_keys["a"])})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == 3 and r.json()["message"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"a":' * 100 + b"1" + b"}" * 100, 200),  # unknown fields only, 100 levels: an empty request
        (b'{"a":' * 101 + b"1" + b"}" * 101, 400),  # one level too deep
        (b"[" * 5000 + b"1" + b"]" * 5000, 400),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"ch\xff\xfeat"}]}]}]}', 400),  # not UTF-8
    ],
    ids=["depth-100", "depth-101", "array-5000", "invalid-utf8"],
)
async def test_deep_json_and_invalid_utf8_get_400_over_http(ingest, tenant_keys, body: bytes, status: int) -> None:
    r = await ingest.post("/v1/traces", content=body, headers={**JS, **auth(tenant_keys["a"])})
    assert r.status_code == status, r.content
    if status == 400:
        assert r.json()["code"] == 3 and r.json()["message"]


async def test_corrupt_gzip_gets_400(ingest, tenant_keys) -> None:
    headers = {**PB, **auth(tenant_keys["a"]), "content-encoding": "gzip"}
    r = await ingest.post("/v1/traces", content=b"\x1f\x8bnot really gzip", headers=headers)
    assert r.status_code == 400


async def test_missing_key_gets_401_and_wrong_key_gets_401(ingest) -> None:
    body = request_of([llm_span()]).SerializeToString()
    r = await ingest.post("/v1/traces", content=body, headers=PB)
    assert r.status_code == 401 and "missing API key" in status_pb2.Status.FromString(r.content).message
    r = await ingest.post("/v1/traces", content=body, headers={**PB, **auth("lls_" + "x" * 40)})
    assert r.status_code == 401
    r = await ingest.post("/v1/traces", content=body, headers={**PB, "authorization": "Basic abc"})
    assert r.status_code == 401


async def test_x_api_key_header_is_accepted(ingest, tenant_keys) -> None:
    body = request_of([llm_span()]).SerializeToString()
    r = await ingest.post("/v1/traces", content=body, headers={**PB, "x-api-key": tenant_keys["b"]})
    assert r.status_code == 200


async def test_read_only_key_cannot_ingest_403(ingest, tenant_keys) -> None:
    body = request_of([llm_span()]).SerializeToString()
    r = await ingest.post("/v1/traces", content=body, headers={**PB, **auth(tenant_keys["a_read_only"])})
    assert r.status_code == 403 and "ingest" in status_pb2.Status.FromString(r.content).message


async def test_empty_request_is_a_success(ingest, tenant_keys) -> None:
    r = await ingest.post("/v1/traces", content=b"", headers={**PB, **auth(tenant_keys["a"])})
    assert r.status_code == 200


async def test_unreachable_broker_gets_503_with_retry_after_quickly(settings: Settings, store: Store, tenant_keys) -> None:
    from llmscope.broker import free_port

    dead = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "produce_timeout_seconds": 1.0})
    client, producer = await make_client(dead, store)
    async with client:
        r = await client.post(
            "/v1/traces", content=request_of([llm_span()]).SerializeToString(), headers={**PB, **auth(tenant_keys["a"])}
        )
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        ready = await client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False
    await producer.close()


async def test_rate_limited_key_gets_429_with_retry_after(
    settings: Settings, store: Store, make_limiter: MakeLimiter, run_id: str
) -> None:
    # A tenant of this test alone: the Redis buckets are shared with every other run on the machine.
    key = create_key(store, f"{run_id}-t", "rate", {"ingest"})
    client, producer = await make_client(
        settings, store, make_limiter(), rate_limit_per_key=1.0, rate_limit_burst_seconds=1.0
    )
    body = request_of([llm_span()]).SerializeToString()
    async with client:
        statuses = [(await client.post("/v1/traces", content=body, headers={**PB, **auth(key)})) for _ in range(3)]
    await producer.close()
    assert [r.status_code for r in statuses] == [200, 429, 429]
    assert [r.headers["retry-after"] for r in statuses[1:]] == ["1", "1"]
    assert "rate limit" in status_pb2.Status.FromString(statuses[1].content).message


async def test_health_and_ready(ingest) -> None:
    assert (await ingest.get("/health")).json() == {"status": "ok"}
    ready = await ingest.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"broker": True, "store": True}


async def test_unknown_paths_get_the_error_shape_and_otlp_paths_a_status_in_their_encoding(ingest) -> None:
    r = await ingest.get("/nowhere", headers={"x-request-id": "rid-1"})
    assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "Not Found", "request_id": "rid-1"}}
    r = await ingest.post("/v1/logs", content=b"\x00", headers=PB)  # a signal this ingest does not take
    assert r.status_code == 404 and r.headers["content-type"] == "application/x-protobuf"
    assert status_pb2.Status.FromString(r.content).code == 5  # NOT_FOUND
    r = await ingest.post("/v1/logs", content=b"{}", headers=JS)
    assert r.status_code == 404 and r.json()["code"] == 5


async def test_an_unexpected_error_is_a_500_in_the_paths_own_shape(settings: Settings, store: Store, tenant_keys) -> None:
    class Broken:
        async def acquire(self, tenant_id: str, key_id: str, spans: int, limits: RateLimits) -> None:
            raise RuntimeError("a bug")

    producer = IngestProducer(settings)
    app = create_ingest_app(settings, store, producer, KeyResolver(store, 30.0), Broken())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        events = await client.post("/api/v1/events", json={"id": "e1", "timestamp": NOW}, headers=auth(tenant_keys["a"]))
        traces = await client.post("/v1/traces", content=b"", headers={**PB, **auth(tenant_keys["a"])})
    await producer.close()
    assert events.status_code == 500 and events.json()["error"]["code"] == "internal"
    assert traces.status_code == 500 and status_pb2.Status.FromString(traces.content).code == 13  # INTERNAL
