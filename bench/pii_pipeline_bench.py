"""What PII masking costs the whole pipeline: a worker (real tansu, real chDB, default settings)
drains the same backlog of OTLP requests with ~1 KB prompts, once with PII off and once with mask.

Run: python bench/pii_pipeline_bench.py [--spans 200000] [--pii-share 0.1]
The worker is the pipeline's bottleneck stage, so its drain rate is the pipeline's throughput.
Progress is read from the spans table itself (distinct span ids of the run's tenant), never from
the sink's row counter, which also counts rollup rows."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conditions import Machine, header  # noqa: E402
from enrich_bench import make_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402

from llmscope.broker import EmbeddedBroker  # noqa: E402
from llmscope.kafka import IngestProducer, ensure_topics  # noqa: E402
from llmscope.settings import Settings, load_settings  # noqa: E402
from llmscope.storage import Store, open_store  # noqa: E402
from llmscope.storage.migrate import apply_migrations  # noqa: E402
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage  # noqa: E402
from streams.worker import create_worker_app  # noqa: E402


def requests(n: int, pii_share: float, batch: int = 100) -> list[bytes]:
    now = time.time_ns()
    bodies = []
    spans = make_spans(n, pii_share)
    for i in range(0, n, batch):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="bench")))
        out = rs.scope_spans.add().spans
        for s in spans[i : i + batch]:
            attrs = {
                **s.attributes,
                "gen_ai.provider.name": s.provider,
                "gen_ai.request.model": s.request_model,
                "gen_ai.usage.input_tokens": s.input_tokens,
                "gen_ai.usage.output_tokens": s.output_tokens,
            }
            span = out.add(
                trace_id=bytes.fromhex(s.trace_id), span_id=bytes.fromhex(s.span_id), name=s.name, kind=3,
                start_time_unix_nano=now - 60_000_000_000, end_time_unix_nano=now - 59_000_000_000,
            )
            for k, v in attrs.items():
                value = AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v))
                span.attributes.append(KeyValue(key=k, value=value))
        bodies.append(req.SerializeToString())
    return bodies


POLL = 0.02  # seconds between progress reads; each is one small query in this process


async def stored_spans(store: Store, tenant: str) -> int:
    sql = f"SELECT uniqExact(span_id) AS n FROM {store.database}.spans WHERE tenant_id = {{t:String}}"
    return int((await store.aquery(sql, {"t": tenant}))["n"][0])


async def drain(base: Settings, policy: str, bodies: list[bytes], spans: int, timeout: float) -> float:
    tenant = f"t-{policy}"
    s = base.model_copy(update={"pii_policy": policy, "ingest_topic": f"bench-{policy}", "worker_name": f"bench-{policy}"})
    await ensure_topics(s)
    producer = IngestProducer(s)
    await producer.connect()
    await asyncio.gather(*(producer.send(IngestMessage(tenant, FORMAT_OTLP_TRACES, time.time_ns(), b)) for b in bodies))
    await producer.close()
    store = open_store(s)
    app, _ = create_worker_app(s, store)
    await app.start()
    try:
        deadline = time.monotonic() + timeout
        # Timing starts at the first stored spans (it excludes the consumer-group join) and ends when
        # the last span is readable; spans stored before the start are not counted in the rate.
        while (first := await stored_spans(store, tenant)) == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"FAILED: pii={policy}: no span stored within {timeout:.0f} s")
            await asyncio.sleep(POLL)
        t0 = time.perf_counter()
        while (n := await stored_spans(store, tenant)) < spans:
            if time.monotonic() > deadline:
                raise SystemExit(f"FAILED: pii={policy}: {n} of {spans} spans stored within {timeout:.0f} s")
            await asyncio.sleep(POLL)
        elapsed = time.perf_counter() - t0
        print(f"  pii={policy}: {spans - first:,} spans stored in {elapsed:.2f} s after the first {first:,}", flush=True)
        return (spans - first) / elapsed
    finally:
        await app.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # Requests of 100 spans are one message each and a batch holds up to 200 messages (20,000
    # spans): the drain must span many batches, or the rate is one batch's time, mostly noise.
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--pii-share", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=600.0, help="fail if a drain takes longer")
    args = parser.parse_args()
    bodies = requests(args.spans, args.pii_share)
    broker = EmbeddedBroker.start()
    try:
        base = load_settings(data_dir=Path(tempfile.mkdtemp()), kafka_bootstrap_servers=broker.bootstrap,
                             kafka_idempotence=False, topic_partitions=2)
        apply_migrations(open_store(base), base.retention_days)
        header(
            f"one in-process worker (Faust agent, default settings: {base.worker_processes} CPU-stage process, batches "
            f"of up to {base.sink_batch_messages} messages) draining a backlog of {args.spans:,} spans already in tansu "
            f"into chDB, once per PII policy ({args.spans // 100:,} messages of 100 spans, "
            f"≈{args.spans / 100 / base.sink_batch_messages:.0f} full batches)",
            "wall clock in this process from the first stored spans to the last one readable (distinct span ids in "
            f"the spans table, polled every {POLL * 1000:.0f} ms); one run per policy, no best-of",
        )
        machine = Machine()
        rates = {policy: await drain(base, policy, bodies, args.spans, args.timeout) for policy in ("off", "mask")}
    finally:
        broker.stop()
    conditions = machine.summary()
    print(f"{args.spans} spans with ~1 KB prompts ({args.pii_share:.0%} holding PII), drained by one worker:")
    for policy, rate in rates.items():
        print(f"  pii={policy:4s}  {rate:8.0f} spans/s")
    print(f"  ratio mask/off {rates['mask'] / rates['off']:.2f}: masking costs {1 - rates['mask'] / rates['off']:.0%} "
          "of pipeline throughput (aim < 30%)")
    print(f"machine: {conditions}")


if __name__ == "__main__":
    asyncio.run(main())
