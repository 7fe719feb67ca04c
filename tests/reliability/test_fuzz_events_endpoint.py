"""Hostile bodies on POST /api/v1/events, through the real app and a real producer: whatever
arrives, the answer is a 2xx or a 4xx with our error shape, never a 500."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from llmscope.kafka import ensure_topics
from tests.ingest.conftest import make_client
from tests.reliability.conftest import new_tenant, private_settings

FUZZ = hsettings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
ALLOWED = {200, 400, 413, 415}

json_any = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
# Wrong on purpose, each in its own way: id lengths, far timestamps, huge strings, odd types.
hex_ids = st.integers(0, 40).flatmap(lambda n: st.text("0123456789abcdefABCDEFxyz", min_size=n, max_size=n))
timestamps = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format,
        st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
        st.sampled_from(["Z", "+14:00", "-23:59", "", ".123456789123Z", "+99:99"]),
    ),
)
huge = st.sampled_from([10_000, 300_000, 2_000_000]).map(lambda n: "x" * n)
field_values = {
    "id": st.one_of(st.text(max_size=200), huge, json_any),
    "trace_id": hex_ids, "span_id": hex_ids, "parent_span_id": hex_ids,
    "timestamp": timestamps, "end_timestamp": timestamps,
    "latency_ms": st.one_of(st.floats(), st.integers()),
    "input_tokens": st.integers(min_value=-(2**70), max_value=2**70),
    "input": st.one_of(json_any, huge), "output": st.one_of(json_any, huge),
    "metadata": st.dictionaries(st.text(max_size=200), json_any, max_size=70),
    "tags": st.lists(st.text(max_size=200), max_size=70),
    "status": st.text(max_size=10), "operation": st.text(max_size=70), "error": json_any,
}


def dumps(value: object) -> bytes:
    """JSON text as a client could send it: integers beyond 64 bits included."""
    return json.dumps(value, ensure_ascii=False).encode()


def valid_event() -> dict[str, object]:
    return {"id": uuid.uuid4().hex, "timestamp": time.time_ns(), "model": "gpt-4o", "provider": "openai", "input_tokens": 3}


mutated_event = st.lists(
    st.one_of(*(st.tuples(st.just(k), v) for k, v in field_values.items()), st.tuples(st.text(max_size=20), json_any)),
    max_size=4,
).map(lambda changes: {**valid_event(), **dict(changes)})


def _deep(depth: int) -> bytes:
    return b'{"events": ' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    json_any.map(dumps),
    st.lists(mutated_event, min_size=1, max_size=5).map(lambda events: dumps({"events": events})),
    mutated_event.map(dumps),
    st.integers(1, 100_000).map(_deep),
    st.binary(max_size=200),  # invalid UTF-8 and plain garbage
    st.tuples(mutated_event, st.binary(min_size=1, max_size=4)).map(  # invalid UTF-8 inside a string
        lambda t: dumps(t[0]).replace(b'"gpt-4o"', b'"gpt' + t[1] + b'"')
    ),
    st.integers(1001, 1500).map(lambda n: dumps({"events": [valid_event() for _ in range(n)]})),
)
encodings = st.sampled_from([None, None, "gzip", "identity", "deflate", "br", "gzip, gzip", "x-bogus"])


@pytest.fixture(scope="module")
async def events(settings, store) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    s = private_settings(settings, "fuzz-events")
    await ensure_topics(s)
    client, producer = await make_client(s, store)
    _tenant, key = new_tenant(store, "fuzz-events")
    yield client, {"authorization": f"Bearer {key}", "content-type": "application/json"}
    await client.aclose()
    await producer.close()


@FUZZ
@given(body=bodies, encoding=encodings)
async def test_events_endpoint_never_answers_500(events, body: bytes, encoding: str | None) -> None:
    client, headers = events
    if encoding == "gzip":
        body = gzip.compress(body)
    r = await client.post("/api/v1/events", content=body, headers={**headers, **({"content-encoding": encoding} if encoding else {})})
    assert r.status_code in ALLOWED, (r.status_code, r.text[:500])
    result = r.json()
    if r.status_code == 200:
        assert isinstance(result["accepted"], int) and isinstance(result["rejected"], list)
    else:
        assert set(result["error"]) == {"code", "message", "request_id"}
