"""OTLP/HTTP load generator: pre-built protobuf bodies, several concurrent clients, latency per request."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet-20241022"), ("google", "gemini-1.5-pro")]


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_bodies(total_spans: int, batch: int, seed: int = 7) -> list[bytes]:
    """One trace per request: a root agent span and batch-1 LLM calls under it, realistic attributes."""
    rng = random.Random(seed)
    bodies = []
    now = time.time_ns()
    for _ in range(total_spans // batch):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([_kv("service.name", f"svc-{rng.randrange(5)}"), _kv("deployment.environment", "bench")])
        spans = rs.scope_spans.add().spans
        trace_id, root_id = os.urandom(16), os.urandom(8)
        start = now - rng.randrange(60_000_000_000)
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
        bodies.append(req.SerializeToString())
    return bodies


async def run_load(url: str, key: str, bodies: list[bytes], concurrency: int, rate: float = 0.0) -> dict[str, object]:
    """Send every body; with `rate` (requests/s) > 0, paced to that rate instead of as fast as possible."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(bodies))
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"}

    started = time.perf_counter()
    sent = 0

    async def client() -> None:
        nonlocal sent
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as http:
            while queue:
                body = queue.pop()
                if rate:
                    sent += 1
                    await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
                t0 = time.perf_counter()
                r = await http.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "latencies": latencies, "statuses": statuses, "last_ack": time.time()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="http://host:4318/v1/traces")
    parser.add_argument("--key", required=True)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="spans/s to pace at; 0 = as fast as possible")
    args = parser.parse_args()
    bodies = build_bodies(args.spans, args.batch)
    result = asyncio.run(run_load(args.url, args.key, bodies, args.concurrency, args.rate / args.batch))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
