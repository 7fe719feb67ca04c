"""The HTTP server every role runs: told port 0, it listens on a port the system chose and says
which (what `up` prints in its banner, so the printed endpoint is one that answers)."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from llmscope.http import make_server


async def test_a_server_given_port_0_reports_the_port_it_answers_on() -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    server = make_server(app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        assert server.port != 0
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{server.port}/ping")
        assert r.json() == {"pong": "yes"}
    finally:
        server.should_exit = True
        await task
