"""span()/@trace: ids, nesting of wrapped LLM calls under the enclosing span, sync and async, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import llmscope_sdk
import openai
import pytest
from conftest import IngestServer, LLMServer
from llmscope_sdk import Client, current_span, span, trace


def by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in events}


def test_llm_calls_nest_under_the_enclosing_spans(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = llmscope_sdk.wrap_openai(
        openai.OpenAI(api_key="k", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk
    )
    with span("research", kind="agent", client=sdk, user_id="u-1", session_id="s-1", tags=["beta"]) as agent:
        agent.set_input("find x")
        with span("search", kind="tool", client=sdk, metadata={"engine": "web", "hits": 3}):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        agent.set_output({"answer": 42})
    assert current_span() is None
    assert sdk.flush(5)
    events = by_name(ingest.events)
    root, tool, call = events["research"], events["search"], events["chat gpt-4o"]
    assert root["operation"] == "agent" and tool["operation"] == "tool" and call["operation"] == "chat"
    assert len(root["trace_id"]) == 32 and root["trace_id"] == tool["trace_id"] == call["trace_id"]
    assert "parent_span_id" not in root
    assert tool["parent_span_id"] == root["span_id"] and call["parent_span_id"] == tool["span_id"]
    assert call["user_id"] == tool["user_id"] == "u-1" and call["session_id"] == "s-1"
    assert root["tags"] == ["beta"] and tool["metadata"] == {"engine": "web", "hits": 3}
    assert root["input"] == "find x" and root["output"] == '{"answer":42}'
    assert root["latency_ms"] >= tool["latency_ms"] >= call["latency_ms"]


def test_separate_spans_get_separate_traces(ingest: IngestServer, sdk: Client) -> None:
    with span("one", client=sdk):
        pass
    with span("two", client=sdk):
        pass
    assert sdk.flush(5)
    one, two = ingest.events
    assert one["trace_id"] != two["trace_id"] and one["operation"] == "span"


def test_trace_decorator_records_errors_and_reraises(ingest: IngestServer, sdk: Client) -> None:
    @trace(name="lookup", kind="tool", client=sdk)
    def lookup(key: str) -> str:
        raise KeyError(key)

    @trace(client=sdk)
    def outer() -> str:
        try:
            lookup("missing")
        except KeyError:
            pass
        return "done"

    assert outer() == "done"
    assert sdk.flush(5)
    events = by_name(ingest.events)
    failed = events["lookup"]
    assert failed["status"] == "error" and failed["error"] == {"type": "KeyError", "message": "'missing'"}
    parent = events["test_trace_decorator_records_errors_and_reraises.<locals>.outer"]
    assert parent["status"] == "ok" and failed["parent_span_id"] == parent["span_id"]


async def test_async_spans_keep_concurrent_tasks_apart(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = llmscope_sdk.wrap_openai(
        openai.AsyncOpenAI(api_key="k", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk
    )

    @trace(kind="agent", client=sdk)
    async def worker(n: int) -> None:
        async with span(f"step-{n}", kind="tool", client=sdk):
            await asyncio.sleep(0.01 * (3 - n))  # interleave the tasks
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": str(n)}])

    await asyncio.gather(*(worker(n) for n in range(3)))
    assert sdk.flush(5)
    events = ingest.events
    steps = {e["name"]: e for e in events if e["name"].startswith("step-")}
    calls = [e for e in events if e["operation"] == "chat"]
    assert len(steps) == 3 and len(calls) == 3
    assert len({s["trace_id"] for s in steps.values()}) == 3
    for call in calls:
        n = call["input"][0]["content"]
        assert call["parent_span_id"] == steps[f"step-{n}"]["span_id"]
        assert call["trace_id"] == steps[f"step-{n}"]["trace_id"]


def test_unconfigured_sdk_is_a_silent_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("LLMSCOPE_ENDPOINT", raising=False)
    with span("nothing"):
        pass
    assert llmscope_sdk.get_client().enabled is False
    assert llmscope_sdk.get_client().stats["sent"] == 0
