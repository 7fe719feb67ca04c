"""OTLP/HTTP load generator: pre-built protobuf bodies, several concurrent clients, latency per request.

Run on its own, it prints one JSON line per acknowledged request as it happens
({"ack": request index, "trace_id": ..., "start_ns": trace start, "t": unix time the 200 arrived}) and a last line
{"summary": {...}}; bench/ingest_bench.py reads them to time each request's freshness."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet-20241022"), ("google", "gemini-1.5-pro")]


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass(frozen=True)
class Request:
    trace_id: str
    start_ns: int  # the trace's start; its spans start within `batch` ms of it
    body: bytes


def build_bodies(total_spans: int, batch: int, seed: int = 7) -> list[bytes]:
    return [r.body for r in build_requests(total_spans, batch, seed)]


def build_requests(total_spans: int, batch: int, seed: int = 7) -> list[Request]:
    """One trace per request: a root agent span and batch-1 LLM calls under it, realistic
    attributes. Traces start in request order over the last minute, so the traces of a run of
    consecutive requests can be listed by one narrow time range."""
    rng = random.Random(seed)
    requests = []
    count = total_spans // batch
    now = time.time_ns()
    for n in range(count):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", f"svc-{rng.randrange(5)}"), _kv("deployment.environment", "bench")])
        spans = rs.scope_spans.add().spans
        trace_id, root_id = os.urandom(16), os.urandom(8)
        start = now - 60_000_000_000 + n * 60_000_000_000 // count
        spans.append(Span(trace_id=trace_id, span_id=root_id, name="agent.run", kind=1,
                          start_time_unix_nano=start, end_time_unix_nano=start + 5_000_000_000))
        for i in range(batch - 1):
            provider, model = rng.choice(MODELS)
            s = start + i * 1_000_000
            spans.append(Span(
                trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name=f"chat {model}", kind=3,
                start_time_unix_nano=s, end_time_unix_nano=s + rng.randrange(50_000_000, 3_000_000_000),
                attributes=[
                    _kv("gen_ai.provider.name", provider), _kv("gen_ai.request.model", model),
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.usage.input_tokens", rng.randrange(50, 4000)),
                    _kv("gen_ai.usage.output_tokens", rng.randrange(10, 800)),
                    _kv("user.id", f"user-{rng.randrange(200)}"), _kv("session.id", f"sess-{rng.randrange(1000)}"),
                ],
                status=Status(code=2 if rng.random() < 0.02 else 1),
            ))
        requests.append(Request(trace_id.hex(), start, req.SerializeToString()))
    return requests


async def run_load(
    url: str, key: str, requests: list[Request], concurrency: int, rate: float = 0.0,
    on_ack: Callable[[int, Request, float], None] | None = None,
) -> dict[str, object]:
    """Send every request; with `rate` (requests/s) > 0, paced to that rate instead of as fast as
    possible. `on_ack(index, request, unix time)` is called as each 200 arrives."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(list(enumerate(requests))))
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"}

    started = time.perf_counter()
    sent = 0

    async def client() -> None:
        nonlocal sent
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as http:
            while queue:
                index, request = queue.pop()
                if rate:
                    sent += 1
                    await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
                t0 = time.perf_counter()
                r = await http.post(url, content=request.body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200 and on_ack is not None:
                    on_ack(index, request, time.time())

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="http://host:4318/v1/traces")
    parser.add_argument("--key", required=True)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="spans/s to pace at; 0 = as fast as possible")
    args = parser.parse_args()
    requests = build_requests(args.spans, args.batch)

    def on_ack(index: int, request: Request, t: float) -> None:
        print(json.dumps({"ack": index, "trace_id": request.trace_id, "start_ns": request.start_ns, "t": t}), flush=True)

    result = asyncio.run(run_load(args.url, args.key, requests, args.concurrency, args.rate / args.batch, on_ack))
    print(json.dumps({"summary": result}), flush=True)


if __name__ == "__main__":
    main()
