"""Log lines: JSON objects carrying the request id, tenant and role of the request that caused
them; text for a terminal; no secret in either."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from ingest.ratelimit import RedisRateLimiter
from llmscope.broker import free_port
from llmscope.logs import log_handler
from llmscope.settings import Settings
from llmscope.storage import Store
from tests.ingest.conftest import make_client
from tests.otlp_factory import llm_span, request_of


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the process logs while the test runs, as the JSON handler of a role writes it."""
    out = io.StringIO()
    handler = log_handler(out, as_json=True, role="ingest")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def _records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_a_request_s_log_lines_carry_its_request_id_tenant_and_role(
    json_lines: io.StringIO, settings: Settings, store: Store, tenant_keys: dict[str, str]
) -> None:
    # Redis is down (nothing listens on that port): the rate limiter logs while the request runs.
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    client, producer = await make_client(settings, store, limiter=limiter)
    try:
        headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {tenant_keys['a']}",
                   "x-request-id": "req-logs-1"}
        r = await client.post("/v1/traces", content=request_of([llm_span()]).SerializeToString(), headers=headers)
        assert r.status_code == 200 and r.headers["x-request-id"] == "req-logs-1"
    finally:
        await client.aclose()
        await producer.close()
        await limiter.close()
    lines = [rec for rec in _records(json_lines) if "rate limiter (Redis) unavailable" in rec["message"]]
    assert lines, json_lines.getvalue()
    line = lines[0]
    assert line["request_id"] == "req-logs-1" and line["tenant"] == "tenant-a" and line["role"] == "ingest"
    assert line["level"] == "WARNING" and line["logger"] == "ingest.ratelimit" and line["time"].endswith("+00:00")
    assert tenant_keys["a"] not in json_lines.getvalue()


def test_log_lines_outside_a_request_have_no_request_id(json_lines: io.StringIO) -> None:
    logging.getLogger("llmscope.test").warning("between requests")
    (line,) = [rec for rec in _records(json_lines) if rec["message"] == "between requests"]
    assert line["request_id"] == "" and line["tenant"] == ""


def test_secrets_never_reach_a_log_line(json_lines: io.StringIO, tenant_keys: dict[str, str]) -> None:
    key = tenant_keys["b"]
    secrets = [key, "hunter2", "s3cr3t-value", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "tok-abcdef"]
    log = logging.getLogger("llmscope.test")
    log.warning("key %s from clickhouse http://llmscope:hunter2@clickhouse:8123 with password=s3cr3t-value", key)
    log.warning("webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, header Authorization: Bearer tok-abcdef")
    try:
        raise httpx.HTTPError(f"failed with {key}")
    except httpx.HTTPError:
        log.exception("request failed")
    text = json_lines.getvalue()
    for secret in secrets:
        assert secret not in text, secret
    assert key[:12] in text  # the key's prefix, its public name, stays readable
    assert "http://llmscope:[redacted]@clickhouse:8123" in text


def test_text_lines_for_a_terminal_name_the_request() -> None:
    from llmscope.logs import request_id_var

    out = io.StringIO()
    logger = logging.getLogger("llmscope.test.text")
    handler = log_handler(out, as_json=False, role="query")
    logger.addHandler(handler)
    token = request_id_var.set("req-text-1")
    try:
        logger.warning("something happened")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    line = out.getvalue().strip()
    assert not line.startswith("{") and line.endswith("WARNING llmscope.test.text: something happened [request_id=req-text-1]")
