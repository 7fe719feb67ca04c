"""The request id reaches every log line a request causes (and no other), as the roles' log
handler adds it (llmscope/logs.py)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from llmscope.http import RequestIdMiddleware
from llmscope.logs import ContextFilter

log = logging.getLogger("tests.request_id")


async def test_log_lines_carry_the_id_of_the_request_that_caused_them(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)

    @app.get("/work")
    async def work() -> dict[str, str]:
        log.warning("working")
        return {}

    caplog.handler.addFilter(ContextFilter("query"))
    with caplog.at_level(logging.WARNING, logger="tests.request_id"):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            sent = await client.get("/work", headers={"x-request-id": "caller-chose-this"})
            made = await client.get("/work")
        log.warning("outside")
    ids = [getattr(r, "request_id", None) for r in caplog.records]
    assert ids == ["caller-chose-this", made.headers["x-request-id"], ""]
    assert sent.headers["x-request-id"] == "caller-chose-this"
