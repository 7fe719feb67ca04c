"""wrap_anthropic with the real anthropic client against the loopback stand-in: cache-inclusive input, streams."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from conftest import IngestServer, LLMServer
from llmscope_sdk import Client, wrap_anthropic

MESSAGES = [{"role": "user", "content": "Say hello"}]
# input 12 + cache creation 100 + cache read 1000; output is the last cumulative delta (15), never 7 + 15.
USAGE = {"input_tokens": 1112, "output_tokens": 15, "cached_input_tokens": 1000, "cache_write_tokens": 100}


def sync_client(llm: LLMServer, sdk: Client) -> Any:
    return wrap_anthropic(anthropic.Anthropic(api_key="k", base_url=llm.url, max_retries=0), llmscope_client=sdk)


def async_client(llm: LLMServer, sdk: Client) -> Any:
    return wrap_anthropic(anthropic.AsyncAnthropic(api_key="k", base_url=llm.url, max_retries=0), llmscope_client=sdk)


def sent(ingest: IngestServer, sdk: Client) -> list[dict[str, Any]]:
    assert sdk.flush(5)
    return ingest.events


def check(event: dict[str, Any], text: str = "Hello from Claude") -> None:
    for key, value in USAGE.items():
        assert event[key] == value, key
    assert event["usage_reported"] is True
    assert (event["provider"], event["operation"], event["status"]) == ("anthropic", "chat", "ok")
    assert (event["model"], event["response_model"]) == ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
    assert event["finish_reasons"] == ["end_turn"]
    assert event["output"][0]["role"] == "assistant"
    assert text in str(event["output"][0]["content"])


def test_create_non_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = sync_client(llm, sdk)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, system="Be brief", messages=MESSAGES)
    assert isinstance(message, anthropic.types.Message) and message.content[0].text == "Hello from Claude"
    (event,) = sent(ingest, sdk)
    check(event)
    assert event["input"] == [{"role": "system", "content": "Be brief"}, *MESSAGES]
    assert event["output"] == [{"role": "assistant", "content": [{"type": "text", "text": "Hello from Claude"}]}]


def test_create_streaming_takes_the_last_cumulative_delta(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = sync_client(llm, sdk)
    stream = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.Stream)
    kinds = [e.type for e in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and kinds.count("message_delta") == 2
    check(sent(ingest, sdk)[0])


def test_messages_stream_helper(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = sync_client(llm, sdk)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "Hello from Claude"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 15
    check(sent(ingest, sdk)[0])


async def test_async_create_and_streaming(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = async_client(llm, sdk)
    message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES)
    assert message.usage.cache_read_input_tokens == 1000
    stream = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    assert [e.type async for e in stream][-1] == "message_stop"
    non_streaming, streaming = sent(ingest, sdk)
    check(non_streaming)
    check(streaming)


async def test_async_messages_stream_helper(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = async_client(llm, sdk)
    async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "Hello from Claude"
    check(sent(ingest, sdk)[0])


def test_stream_left_early_is_recorded_once(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = sync_client(llm, sdk)
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES) as stream:
        for _ in stream:
            break
    (event,) = sent(ingest, sdk)
    assert event["metadata"] == {"stream.interrupted": True}
    assert event["input_tokens"] == 1112  # message_start had arrived


def test_errors_are_recorded_and_reraised(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = sync_client(llm, sdk)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="error-400", max_tokens=10, messages=MESSAGES)
    assert info.value.status_code == 400
    with pytest.raises(anthropic.InternalServerError):
        with client.messages.stream(model="error-500", max_tokens=10, messages=MESSAGES):
            pass
    first, second = sent(ingest, sdk)
    assert (first["status"], first["error"]["type"]) == ("error", "BadRequestError")
    assert (second["status"], second["error"]["type"]) == ("error", "InternalServerError")


async def test_async_errors_are_reraised(llm: LLMServer, ingest: IngestServer, sdk: Client) -> None:
    client = async_client(llm, sdk)
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="error-429", max_tokens=10, messages=MESSAGES, stream=True)
    assert sent(ingest, sdk)[0]["error"]["type"] == "RateLimitError"
