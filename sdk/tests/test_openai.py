"""wrap_openai with the real openai client against the loopback stand-in: usage, streams, errors, identity."""

from __future__ import annotations

import gc
from typing import Any

import openai
import pytest
from conftest import IngestServer, LLMServer
from llmscope_sdk import Client, wrap_openai

MESSAGES = [{"role": "user", "content": "Say hello"}]
CHAT_USAGE = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cached_input_tokens": 1024,
    "reasoning_tokens": 256,
}


def clients(llm: LLMServer, sdk: Client) -> tuple[Any, Any]:
    raw = openai.OpenAI(api_key="sk-test", base_url=f"{llm.url}/v1", max_retries=0)
    wrapped = wrap_openai(
        openai.OpenAI(api_key="sk-test", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk
    )
    return raw, wrapped


def sent(ingest: IngestServer, sdk: Client) -> list[dict[str, Any]]:
    assert sdk.flush(5)
    return ingest.events


def assert_usage(event: dict[str, Any], expected: dict[str, int]) -> None:
    for key, value in expected.items():
        assert event.get(key, 0) == value, key


def test_chat_non_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    response = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0)
    assert isinstance(response, openai.types.chat.ChatCompletion)
    assert response.choices[0].message.content == "Hello there!"
    (event,) = sent(ingest, sdk)
    assert_usage(event, CHAT_USAGE)
    assert event["usage_reported"] is True  # the provider said: its zeros would be real zeros, costing $0
    assert event["provider"] == "openai" and event["operation"] == "chat"
    assert (event["model"], event["response_model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert event["finish_reasons"] == ["stop"] and event["status"] == "ok"
    assert event["input"] == MESSAGES
    assert event["output"] == [{"role": "assistant", "content": "Hello there!"}]
    assert event["latency_ms"] > 0 and len(event["id"]) == 32
    assert "trace_id" not in event and "parent_span_id" not in event


def test_chat_streaming_injects_include_usage_and_hides_the_extra_chunk(
    llm: LLMServer, ingest: IngestServer, sdk: Client
) -> None:
    raw, client = clients(llm, sdk)
    expected = [c.model_dump() for c in raw.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)]
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    got = [c.model_dump() for c in stream]
    assert llm.bodies[-1]["stream_options"] == {"include_usage": True}
    assert got == expected  # the caller sees exactly the stream it asked for
    (event,) = sent(ingest, sdk)
    assert_usage(event, CHAT_USAGE)
    assert event["response_model"] == "gpt-4o-2024-08-06" and event["finish_reasons"] == ["stop"]
    assert event["output"] == [{"role": "assistant", "content": "Hello there!"}]


def test_chat_streaming_with_callers_own_stream_options(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    with client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1200  # theirs: not hidden
    assert_usage(sent(ingest, sdk)[0], CHAT_USAGE)


def test_chat_streaming_with_usage_turned_off_is_respected(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
        )
    )
    assert llm.bodies[-1]["stream_options"] == {"include_usage": False}
    assert len(chunks) == 4
    (event,) = sent(ingest, sdk)
    assert event.get("input_tokens", 0) == 0 and event["output"][0]["content"] == "Hello there!"
    assert "usage_reported" not in event  # no usage came back: unknown, so the cost stays null, not $0


def test_stream_abandoned_early_is_still_recorded(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(stream)
    del stream
    gc.collect()  # the stream sits in a reference cycle: a dropped one is finished by the collector
    events = sent(ingest, sdk)
    assert [e["metadata"] for e in events] == [{"stream.interrupted": True}] * 2
    assert events[0]["output"] == [{"role": "assistant", "content": ""}]


async def test_async_chat_non_streaming_and_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = wrap_openai(openai.AsyncOpenAI(api_key="sk", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk)
    response = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert response.usage.prompt_tokens == 1200
    stream = await client.chat.completions.create(model="o3", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.AsyncStream)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])  # would fail on a usage-only chunk
    assert text == "Hello there!"
    first, second = sent(ingest, sdk)
    assert_usage(first, CHAT_USAGE)
    assert_usage(second, CHAT_USAGE)
    assert second["response_model"] == "o3-2025-04-16"


def test_responses_api_non_streaming_and_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    response = client.responses.create(model="gpt-4o", input="Say hi")
    assert response.output_text == "Hi from responses"
    events = list(client.responses.create(model="gpt-4o", input="Say hi", stream=True))
    assert events[-1].type == "response.completed"
    non_streaming, streaming = sent(ingest, sdk)
    for event in (non_streaming, streaming):
        assert_usage(
            event, {"input_tokens": 900, "output_tokens": 120, "cached_input_tokens": 512, "reasoning_tokens": 64}
        )
        assert event["response_model"] == "gpt-4o-2024-08-06" and event["finish_reasons"] == ["completed"]
        assert (event["input"], event["output"]) == ("Say hi", "Hi from responses")


async def test_async_responses_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = wrap_openai(openai.AsyncOpenAI(api_key="sk", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk)
    stream = await client.responses.create(model="gpt-4o", input="Say hi", stream=True)
    assert [e.type async for e in stream][-1] == "response.completed"
    assert_usage(sent(ingest, sdk)[0], {"input_tokens": 900, "cached_input_tokens": 512})


def test_embeddings(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    result = client.embeddings.create(model="text-embedding-3-small", input="hello world")
    assert result.data[0].embedding == [0.1, 0.2, 0.3]
    (event,) = sent(ingest, sdk)
    assert event["operation"] == "embeddings" and event["input_tokens"] == 8 and "output" not in event


def test_errors_are_recorded_and_reraised_unchanged(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="error-400", messages=MESSAGES)
    assert info.value.status_code == 400 and info.value.body["message"] == "bad model"
    (event,) = sent(ingest, sdk)
    assert event["status"] == "error" and event["error"]["type"] == "BadRequestError"
    assert "bad model" in event["error"]["message"]


async def test_async_errors_are_reraised(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = wrap_openai(openai.AsyncOpenAI(api_key="sk", base_url=f"{llm.url}/v1", max_retries=0), llmscope_client=sdk)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="error-429", messages=MESSAGES, stream=True)
    assert sent(ingest, sdk)[0]["error"]["type"] == "RateLimitError"


def test_wrapping_is_in_place_and_idempotent(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    _, client = clients(llm, sdk)
    assert wrap_openai(client, llmscope_client=sdk) is client
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(sent(ingest, sdk)) == 1


def test_content_capture_can_be_switched_off(llm: LLMServer, ingest: IngestServer, make_client: Any) -> None:
    sdk = make_client(capture_content=False)
    _, client = clients(llm, sdk)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (event,) = sent(ingest, sdk)
    assert "input" not in event and "output" not in event and event["input_tokens"] == 1200
