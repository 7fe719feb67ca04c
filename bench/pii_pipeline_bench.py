"""What PII masking costs the whole pipeline: a worker (real tansu, real chDB, default settings)
drains the same backlog of OTLP requests with ~1 KB prompts, once with PII off and once with mask.

Run: python bench/pii_pipeline_bench.py [--spans 40000] [--pii-share 0.1]
The worker is the pipeline's bottleneck stage, so its drain rate is the pipeline's throughput."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from enrich_bench import make_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402

from llmscope.broker import EmbeddedBroker  # noqa: E402
from llmscope.kafka import IngestProducer, ensure_topics  # noqa: E402
from llmscope.settings import Settings, load_settings  # noqa: E402
from llmscope.storage import open_store  # noqa: E402
from llmscope.storage.migrate import apply_migrations  # noqa: E402
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage  # noqa: E402
from streams.app import create_worker_app  # noqa: E402


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


async def drain(base: Settings, policy: str, bodies: list[bytes], spans: int) -> float:
    s = base.model_copy(update={"pii_policy": policy, "ingest_topic": f"bench-{policy}", "worker_name": f"bench-{policy}"})
    await ensure_topics(s)
    producer = IngestProducer(s)
    await producer.connect()
    await asyncio.gather(*(producer.send(IngestMessage(f"t-{policy}", FORMAT_OTLP_TRACES, time.time_ns(), b)) for b in bodies))
    await producer.close()
    store = open_store(s)
    app, sink = create_worker_app(s, store)
    await app.start()
    while sink.health.rows_written == 0:  # start timing at the first stored batch: excludes the group join
        await asyncio.sleep(0.005)
    t0, first = time.perf_counter(), sink.health.rows_written
    while sink.health.rows_written < spans:
        await asyncio.sleep(0.005)
    rate = (spans - first) / (time.perf_counter() - t0)
    await app.stop()
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=40_000)
    parser.add_argument("--pii-share", type=float, default=0.1)
    args = parser.parse_args()
    bodies = requests(args.spans, args.pii_share)
    broker = EmbeddedBroker.start()
    try:
        base = load_settings(data_dir=Path(tempfile.mkdtemp()), kafka_bootstrap_servers=broker.bootstrap,
                             kafka_idempotence=False, topic_partitions=2)
        apply_migrations(open_store(base), base.retention_days)
        rates = {policy: await drain(base, policy, bodies, args.spans) for policy in ("off", "mask")}
    finally:
        broker.stop()
    print(f"{args.spans} spans with ~1 KB prompts ({args.pii_share:.0%} holding PII), drained by one worker:")
    for policy, rate in rates.items():
        print(f"  pii={policy:4s}  {rate:8.0f} spans/s")
    print(f"  masking costs {1 - rates['mask'] / rates['off']:.0%} of pipeline throughput (aim < 30%)")


if __name__ == "__main__":
    asyncio.run(main())
