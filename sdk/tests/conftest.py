"""Stand-in servers on loopback: the LLMScope events endpoint and an LLM API speaking OpenAI and Anthropic."""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import llmscope_sdk
import pytest
from llmscope_sdk import Client, RetryPolicy

try:  # the server's own contract, when this checkout has it: every event the SDK sends must pass it
    from schemas.event import validate_batch
except ModuleNotFoundError as missing:  # the SDK tested on its own; any other missing module is a failure
    if missing.name != "schemas":
        raise
    validate_batch = None


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    events: list[dict[str, Any]]


class IngestServer:
    """POST /api/v1/events: records each request, answers from `script` (then 200 with the contract's verdict)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: deque[Reply] = deque()
        self.contract_errors: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.release.set()
        self._httpd = _serve(self._handle)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.requests for e in r.events]

    @property
    def unique_events(self) -> dict[str, dict[str, Any]]:
        """What the real server keeps: one event per id."""
        return {e["id"]: e for e in self.events}

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        body = gzip.decompress(raw) if h.headers.get("Content-Encoding") == "gzip" else raw
        payload = json.loads(body)
        self.release.wait(10)
        self.requests.append(Received(dict(h.headers), raw, payload["events"]))
        reply = self.script.popleft() if self.script else None
        if reply is None:
            rejected = []
            if validate_batch is not None:
                _, rejected = validate_batch(payload, max_events=1000)
                self.contract_errors.extend(rejected)
            reply = Reply(body={"accepted": len(payload["events"]) - len(rejected), "rejected": rejected})
        time.sleep(reply.delay)
        _respond(h, reply.status, reply.body, reply.headers)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _serve(handle: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # Tests that stop reading a stream early close the connection on purpose.
            if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd


def _respond(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def _sse(h: BaseHTTPRequestHandler, frames: list[tuple[str | None, Any]]) -> None:
    """An SSE response closed by the server (HTTP/1.0), as the providers stream it."""
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.end_headers()
    for event, data in frames:
        text = data if isinstance(data, str) else json.dumps(data)
        h.wfile.write(((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode())
        h.wfile.flush()


@pytest.fixture
def ingest() -> Iterator[IngestServer]:
    server = IngestServer()
    yield server
    server.close()
    assert not server.contract_errors, f"the SDK sent events the server contract refuses: {server.contract_errors}"


@pytest.fixture
def make_client(ingest: IngestServer) -> Iterator[Any]:
    made: list[Client] = []

    def make(**opts: Any) -> Client:
        opts.setdefault("retry", RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_elapsed=2.0))
        client = Client(opts.pop("api_key", "test-key"), opts.pop("endpoint", ingest.url), **opts)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(1.0)


@pytest.fixture
def sdk(make_client: Any) -> Client:
    """The Client the wrappers under test report to."""
    return make_client(flush_interval=0.05)


@pytest.fixture(autouse=True)
def _no_global_client() -> Iterator[None]:
    yield
    if llmscope_sdk._state._client is not None:
        llmscope_sdk._state._client.shutdown(1.0)
        llmscope_sdk._state._client = None


# ---- the LLM stand-in -------------------------------------------------------------------------------------

MODEL_SNAPSHOT = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "o3": "o3-2025-04-16",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}


class LLMServer:
    """Enough of the OpenAI (/v1/chat/completions, /v1/responses, /v1/embeddings) and Anthropic (/v1/messages) APIs."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._httpd = _serve(self._handle)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))))
        self.bodies.append(body)
        model = body.get("model", "")
        if model.startswith("error-"):
            status = int(model.split("-")[1])
            if h.path.startswith("/v1/messages"):
                error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad model"}}
            else:
                error = {
                    "error": {"message": "bad model", "type": "invalid_request_error", "param": None, "code": None}
                }
            return _respond(h, status, error)
        route = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
        }[h.path.split("?")[0]]
        route(h, body, MODEL_SNAPSHOT.get(model, model))

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any], model: str) -> None:
        usage = {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
        }
        base = {"id": "chatcmpl-1", "created": 1772600767, "model": model, "system_fingerprint": "fp_1"}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Hello there!", "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            return _respond(h, 200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {**base, "object": "chat.completion.chunk", "choices": [choice], **extra}

        frames: list[tuple[str | None, Any]] = [
            (None, chunk({"role": "assistant", "content": ""})),
            (None, chunk({"content": "Hello"})),
            (None, chunk({"content": " there!"})),
            (None, chunk({}, "stop")),
        ]
        if with_usage:
            frames.append((None, {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        _sse(h, [*frames, (None, "[DONE]")])

    def _responses(self, h: BaseHTTPRequestHandler, body: dict[str, Any], model: str) -> None:
        text = {"type": "output_text", "text": "Hi from responses", "annotations": []}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": [text]}
        usage = {
            "input_tokens": 900,
            "input_tokens_details": {"cached_tokens": 512},
            "output_tokens": 120,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 1020,
        }
        response = {
            "id": "resp_1", "object": "response", "created_at": 1772600767, "model": model, "status": "completed",
            "output": [message], "usage": usage, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "incomplete_details": None, "error": None,
        }  # fmt: skip
        if not body.get("stream"):
            return _respond(h, 200, response)
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        _sse(
            h,
            [
                ("response.created", {"type": "response.created", "sequence_number": 0, "response": pending}),
                ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 1,
                 "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hi from responses"}),
                ("response.completed", {"type": "response.completed", "sequence_number": 2, "response": response}),
            ],
        )  # fmt: skip

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any], model: str) -> None:
        data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
        usage = {"prompt_tokens": 8, "total_tokens": 8}
        _respond(h, 200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _messages(self, h: BaseHTTPRequestHandler, body: dict[str, Any], model: str) -> None:
        usage = {"input_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000,
                 "output_tokens": 15}  # fmt: skip
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": "Hello from Claude"}], "stop_reason": "end_turn",
                   "stop_sequence": None}  # fmt: skip
        if not body.get("stream"):
            return _respond(h, 200, {**message, "usage": usage})
        start_usage = {**usage, "output_tokens": 1}
        start = {**message, "content": [], "stop_reason": None, "usage": start_usage}
        _sse(
            h,
            [
                ("message_start", {"type": "message_start", "message": start}),
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
                ("ping", {"type": "ping"}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": "Hello"}}),
                # Cumulative counts: a reader that sums deltas would report 7 + 15 = 22 output tokens.
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": None, "stop_sequence": None},
                                   "usage": {"output_tokens": 7}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": " from Claude"}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": 15, "input_tokens": 12,
                                             "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}}),
                ("message_stop", {"type": "message_stop"}),
            ],
        )  # fmt: skip


@pytest.fixture(scope="session")
def llm() -> Iterator[LLMServer]:
    server = LLMServer()
    yield server
    server.close()


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
