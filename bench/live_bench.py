"""Live stream benchmark: how soon a span reaches a socket, and how many filtered sockets one query
process keeps up with at 2,000 spans/s.

  python bench/live_bench.py latency [--rate 2000] [--seconds 20] [--subscribers 0]
      `llmscope up`; OTLP requests of 100 spans paced at --rate; one unfiltered socket records, per
      span, the delay from the ingest's 200 (ack) to the span's message on the socket (p50/p99).
      --subscribers N adds N sockets filtered by user (1 of 20 users each) in the same `up`.

  python bench/live_bench.py fanout [--rate 2000] [--seconds 8] [--steps 25,50,100,200,400]
      The production shape: one `llmscope query` process with the Redis hub; this script publishes
      stored batches to Redis as workers do (100 spans every 50 ms at 2,000 spans/s) while N
      sockets, each filtered to 1 of 20 users (≈100 spans/s each), read in two client processes.
      A step is served when every socket got ≥ 99.9 % of its spans, nothing was dropped and the
      publish → socket p99 stayed under 1 s. Needs Redis on 127.0.0.1:6379.

Clients run on the same 2-core machine as the server, so the numbers are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from ingest_bench import pct, start_up  # noqa: E402
from llmscope.broker import free_port  # noqa: E402

USERS = 20
BATCH = 100
REDIS = "redis://127.0.0.1:6379/0"


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))


def bodies(total: int) -> list[tuple[bytes, list[str]]]:
    """OTLP requests of BATCH spans and the span ids each carries."""
    out, n = [], 0
    now = time.time_ns()
    while n < total:
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", "live-bench"))
        spans = rs.scope_spans.add().spans
        ids = []
        for _ in range(min(BATCH, total - n)):
            n += 1
            span_id = n.to_bytes(8, "big")
            ids.append(span_id.hex())
            spans.append(Span(
                trace_id=os.urandom(16), span_id=span_id, name="chat", kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=now, end_time_unix_nano=now + 300_000_000,
                attributes=[_kv("gen_ai.provider.name", "openai"), _kv("gen_ai.request.model", "gpt-4o"),
                            _kv("gen_ai.usage.input_tokens", 100), _kv("gen_ai.usage.output_tokens", 20),
                            _kv("user.id", f"u{n % USERS}"), _kv("gen_ai.prompt", "hello " * 20)],
            ))
        out.append((req.SerializeToString(), ids))
    return out


async def _subscriber(url: str, key: str, filters: dict, on_message, ready: asyncio.Event | None = None) -> None:  # type: ignore[no-untyped-def]
    async with connect(url, max_queue=None) as ws:
        await ws.send(orjson.dumps({"type": "auth", "api_key": key, "filters": filters}).decode())
        assert orjson.loads(await ws.recv())["type"] == "ready"
        if ready:
            ready.set()
        async for raw in ws:
            on_message(raw)


async def latency(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, ingest, query, key = start_up(Path(tmp))
        try:
            ws_url = query.replace("http", "ws", 1) + "/api/v1/stream"
            total = int(args.rate * args.seconds)
            work = bodies(total + BATCH)
            warm, work = work[0], work[1:]
            acked: dict[str, float] = {}
            seen: dict[str, float] = {}
            dropped = {"main": 0, "filtered": 0}
            filtered_counts = [0] * args.subscribers

            def main_socket(raw: str | bytes) -> None:
                m = orjson.loads(raw)
                if m["type"] == "span":
                    seen[m["span_id"]] = time.time()
                elif m["type"] == "dropped":
                    dropped["main"] += m["count"] or 1

            def filtered(i: int):  # type: ignore[no-untyped-def]
                def on(raw: str | bytes) -> None:
                    if '"dropped"' in raw if isinstance(raw, str) else b'"dropped"' in raw:
                        dropped["filtered"] += 1
                    filtered_counts[i] += 1
                return on

            ready = asyncio.Event()
            tasks = [asyncio.create_task(_subscriber(ws_url, key, {}, main_socket, ready))]
            tasks += [asyncio.create_task(_subscriber(ws_url, key, {"user_id": f"u{i % USERS}"}, filtered(i)))
                      for i in range(args.subscribers)]
            await ready.wait()
            headers = {"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"}
            async with httpx.AsyncClient(timeout=30, headers=headers) as http:
                r = await http.post(f"{ingest}/v1/traces", content=warm[0])  # worker warm-up
                deadline = time.time() + 60
                while warm[1][0] not in seen and time.time() < deadline:
                    await asyncio.sleep(0.05)
                seen.clear()

                async def send(body: bytes, ids: list[str]) -> None:
                    resp = await http.post(f"{ingest}/v1/traces", content=body)
                    resp.raise_for_status()
                    now = time.time()
                    for i in ids:
                        acked[i] = now

                start, sends = time.time(), []
                for n, (body, ids) in enumerate(work):
                    await asyncio.sleep(max(0.0, start + n * BATCH / args.rate - time.time()))
                    sends.append(asyncio.create_task(send(body, ids)))
                await asyncio.gather(*sends)
                sent_for = time.time() - start
                deadline = time.time() + 15
                while len(seen) < len(acked) and time.time() < deadline:
                    await asyncio.sleep(0.1)
            for t in tasks:
                t.cancel()
            delays = [(seen[i] - acked[i]) * 1000 for i in acked if i in seen]
            print(json.dumps({
                "mode": "latency (llmscope up: ingest → Kafka → worker → chDB → hub → socket)",
                "spans": len(acked), "offered_rate": args.rate, "achieved_rate": round(len(acked) / sent_for),
                "received": len(delays), "missing": len(acked) - len(delays), "dropped": dropped,
                "ack_to_socket_ms": {"p50": round(pct(delays, 50)), "p90": round(pct(delays, 90)), "p99": round(pct(delays, 99)),
                                     "max": round(max(delays))} if delays else None,
                "filtered_subscribers": args.subscribers,
                "filtered_received": sum(filtered_counts), "filtered_expected": len(acked) * args.subscribers // USERS,
            }, indent=2))
        finally:
            proc.terminate()
            proc.wait(60)


# --- fan-out: one query process, Redis hub, N filtered sockets in client processes ---

def _cli(data_dir: str, *args: str) -> str:
    env = {**os.environ, "LLMSCOPE_DATA_DIR": data_dir}
    out = subprocess.run([sys.executable, "-m", "llmscope.cli", *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(url: str, key: str, first: int, count: int, seconds: float) -> None:
    """A client process: `count` sockets, socket i filtered to user u{i % 20}; prints one JSON line."""
    delays: list[float] = []
    got = [0] * count
    dropped = [0]

    def on(i: int):  # type: ignore[no-untyped-def]
        def handle(raw: str | bytes) -> None:
            text = raw if isinstance(raw, str) else raw.decode()
            if text.startswith('{"type":"span"'):  # the server's compact JSON; parsing every one would bind the client
                got[i] += 1
                if got[i] % 10 == 0:  # sample: enough for percentiles, light on the client
                    delays.append((time.time() - orjson.loads(text)["bench_sent"]) * 1000)
            elif text.startswith('{"type":"dropped"'):
                dropped[0] += orjson.loads(text)["count"] or 1
        return handle

    events = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(_subscriber(url, key, {"user_id": f"u{(first + i) % USERS}"}, on(i), events[i]))
             for i in range(count)]
    await asyncio.gather(*(e.wait() for e in events))
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for t in tasks:
        t.cancel()
    print(json.dumps({"got": [got[i] for i in range(count)], "first": first, "dropped": dropped[0], "delays": delays}), flush=True)


async def fanout(args: argparse.Namespace) -> None:
    from llmscope.live import RedisLiveHub

    prefix = f"live-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        _cli(tmp, "migrate")
        key = _cli(tmp, "create-key", "--tenant", "bench", "--scopes", "read")
        port = free_port()
        env = {**os.environ, "LLMSCOPE_DATA_DIR": tmp, "LLMSCOPE_REDIS_URL": REDIS, "LLMSCOPE_QUERY_PORT": str(port),
               "LLMSCOPE_QUERY_HOST": "127.0.0.1", "LLMSCOPE_LIVE_CHANNEL_PREFIX": prefix, "LLMSCOPE_LOG_LEVEL": "WARNING",
               "LLMSCOPE_LIVE_MAX_CONNECTIONS": "5000"}
        server = subprocess.Popen([sys.executable, "-m", "llmscope.cli", "query"], env=env)
        hub = RedisLiveHub(REDIS, prefix)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            url = f"ws://127.0.0.1:{port}/api/v1/stream"
            template = {"type": "span", "trace_id": "0" * 32, "span_id": "", "parent_span_id": None, "name": "chat",
                        "time": "2026-12-01T00:00:00.000Z", "service": "live-bench", "model": "gpt-4o", "provider": "openai",
                        "operation": "chat", "status": "ok", "latency_ms": 300.0, "input_tokens": 100, "output_tokens": 20,
                        "cost_usd": 0.00045, "user_id": "", "session_id": "", "input": "hello " * 20, "output": "hi"}
            results = []
            for n in [int(s) for s in args.steps.split(",")]:
                halves = [(0, n // 2), (n // 2, n - n // 2)]
                clients = [subprocess.Popen([sys.executable, __file__, "client", url, key, str(first), str(count),
                                             str(args.seconds + 6)], stdout=subprocess.PIPE, text=True)
                           for first, count in halves if count]
                for c in clients:
                    assert c.stdout is not None and c.stdout.readline().strip() == "ready"
                await asyncio.sleep(0.5)
                per_user = [0] * USERS
                cpu0, t0, seq = _cpu_seconds(server.pid), time.time(), 0
                ticks = int(args.seconds * args.rate / BATCH)
                for tick in range(ticks):
                    await asyncio.sleep(max(0.0, t0 + tick * BATCH / args.rate - time.time()))
                    now, batch = time.time(), []
                    for _ in range(BATCH):
                        seq += 1
                        per_user[seq % USERS] += 1
                        batch.append({**template, "span_id": f"{seq:016x}", "user_id": f"u{seq % USERS}", "bench_sent": now})
                    await hub.publish("bench", batch)
                cpu = (_cpu_seconds(server.pid) - cpu0) / (time.time() - t0)
                reports = [json.loads(c.communicate(timeout=60)[0].strip().splitlines()[-1]) for c in clients]
                got, delays, dropped = [], [], 0
                for r in reports:
                    dropped += r["dropped"]
                    delays += r["delays"]
                    got += [(r["first"] + i, g) for i, g in enumerate(r["got"])]
                worst = min(g / per_user[i % USERS] for i, g in got)
                p99 = pct(delays, 99) if delays else float("inf")
                step = {"subscribers": n, "spans_per_s": args.rate, "messages_sent_per_s": round(sum(g for _, g in got) / args.seconds),
                        "worst_socket_share": round(worst, 4), "dropped": dropped,
                        "publish_to_socket_ms": {"p50": round(pct(delays, 50), 1), "p99": round(p99, 1)} if delays else None,
                        "query_process_cpu": f"{cpu:.0%} of one core", "served": worst >= 0.999 and dropped == 0 and p99 < 1000}
                results.append(step)
                print(json.dumps(step), flush=True)
                if not step["served"] and args.stop_at_first_failure:
                    break
            served = [s["subscribers"] for s in results if s["served"]]
            print(json.dumps({"mode": "fanout (one query process, Redis hub)", "max_subscribers_served": max(served) if served else 0}))
        finally:
            await hub.close()
            server.terminate()
            server.wait(30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        url, key, first, count, seconds = sys.argv[2:7]
        asyncio.run(client(url, key, int(first), int(count), float(seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--rate", type=float, default=2000)
    lat.add_argument("--seconds", type=float, default=20)
    lat.add_argument("--subscribers", type=int, default=0)
    fan = sub.add_parser("fanout")
    fan.add_argument("--rate", type=float, default=2000)
    fan.add_argument("--seconds", type=float, default=8)
    fan.add_argument("--steps", default="25,50,100,200,400")
    fan.add_argument("--stop-at-first-failure", action="store_true")
    args = parser.parse_args()
    asyncio.run(latency(args) if args.mode == "latency" else fanout(args))


if __name__ == "__main__":
    main()
