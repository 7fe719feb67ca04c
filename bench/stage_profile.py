"""Per-stage cost of one span on its way from an OTLP body to a stored row: µs per span for each
stage function, timed directly over the same realistic GenAI spans (≈1 KB prompts and completions,
10 % holding PII), PII mask on.

Run: python bench/stage_profile.py [--spans 20000] [--repeat 3]

Each stage runs over the output of the one before it, in the order a span travels: the ingest
decodes and validates a request body and splits it into Kafka message values; the worker decodes a
message value again, normalises, enriches (names and cost; then PII), resolves inheritance within
the batch, encodes the rows and inserts them into chDB. Times are CPU seconds of this process
(time.process_time; the insert's is wall clock, since chDB works on threads of its own), best of
`--repeat` runs over fresh copies."""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from conditions import Machine, header  # noqa: E402
from pii_pipeline_bench import requests  # noqa: E402

from ingest.otlp_codec import decode_traces  # noqa: E402
from ingest.otlp_validate import split_request, validate_spans  # noqa: E402
from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import open_store  # noqa: E402
from llmscope.storage.migrate import apply_migrations  # noqa: E402
from schemas import span_columns  # noqa: E402
from schemas.messages import FORMAT_OTLP_TRACES, IngestMessage, ingest_message_from  # noqa: E402
from schemas.tenant_settings import PiiPolicy  # noqa: E402
from schemas.times import NS_PER_DAY  # noqa: E402
from streams.cpu_stage import tune_collector  # noqa: E402
from streams.stages.decode import spans_from_message  # noqa: E402
from streams.stages.enrich import EnrichmentPolicy, TenantPolicies, enrich  # noqa: E402
from streams.stages.pii import redact_span  # noqa: E402
from streams.stages.pipeline import RawMessage, _inherit_within, prepare  # noqa: E402

PROTOBUF = "application/x-protobuf"


def timed(items: list[Any], work: Callable[[Any], Any], repeat: int, *, fresh: bool = False, wall: bool = False) -> tuple[float, list[Any]]:
    """Best seconds of `repeat` runs of `work` over each item (deep copies when `fresh`: the stage
    changes its input), and the last run's outputs."""
    clock = time.perf_counter if wall else time.process_time
    best, out = float("inf"), []
    for _ in range(repeat):
        batch = copy.deepcopy(items) if fresh else items
        t0 = clock()
        out = [work(item) for item in batch]
        best = min(best, clock() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--pii-share", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--collector", choices=("worker", "default"), default="worker",
                        help="the garbage collector's thresholds: the CPU stage's processes' or Python's defaults")
    args = parser.parse_args()
    header(
        f"each stage function over {args.spans:,} spans in requests of 100 (≈1 KB prompts, "
        f"{args.pii_share:.0%} with PII), PII mask",
        f"in process, one thread; best of {args.repeat}; CPU time per span (the insert: wall clock); "
        f"{args.collector} garbage-collector thresholds",
    )
    if args.collector == "worker":
        tune_collector()  # as the CPU stage's processes run
    machine = Machine()
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()))
    bodies = requests(args.spans, args.pii_share)
    n = args.spans
    print(f"{len(bodies)} bodies, {sum(map(len, bodies)) / n:.0f} bytes per span on the wire")
    rows: list[tuple[str, float]] = []

    # Ingest: body → request → validated → Kafka message values.
    t, decoded = timed(bodies, lambda b: decode_traces(b, PROTOBUF), args.repeat)
    rows.append(("ingest: decode protobuf", t))
    now = time.time_ns()
    validate = lambda r: validate_spans(r, now_ns=now, max_past_ns=settings.retention_days * NS_PER_DAY,  # noqa: E731
                                        max_span_bytes=settings.max_message_bytes // 2)
    t, validated = timed(decoded, validate, args.repeat)
    rows.append(("ingest: validate", t))
    t, chunks = timed(validated, lambda v: split_request(v.request, settings.max_message_bytes,
                                                         settings.max_spans_per_message), args.repeat)
    rows.append(("ingest: split into messages", t))

    # Worker: message value → spans → enriched → PII → inherited → rows → chDB.
    messages = [IngestMessage("t1", FORMAT_OTLP_TRACES, now, c) for cs in chunks for c in cs]
    raws = [RawMessage("bench", 0, i, m.value, m.headers()) for i, m in enumerate(messages)]
    t, _ = timed(raws, lambda r: ingest_message_from(r.value, r.headers), args.repeat)
    rows.append(("worker: read headers", t))
    t, per_message = timed(messages, spans_from_message, args.repeat)
    rows.append(("worker: decode + normalise", t))
    spans = [s for ss in per_message for s in ss]
    names = EnrichmentPolicy(pii=PiiPolicy.OFF)
    for span in copy.deepcopy(spans[:200]):  # warm the model and price caches, as a running worker has them
        enrich(span, names)
    t, _ = timed(spans, lambda s: enrich(s, names), args.repeat, fresh=True)
    rows.append(("worker: enrich (names, cost)", t))
    t, _ = timed(spans, lambda s: redact_span(s, PiiPolicy.MASK), args.repeat, fresh=True)
    rows.append(("worker: PII mask", t))
    for span in spans:
        enrich(span, EnrichmentPolicy(pii=PiiPolicy.MASK))
    t, _ = timed([spans], _inherit_within, args.repeat, fresh=True)
    rows.append(("worker: inherit within batch", t))
    t, encoded = timed([spans], lambda ss: span_columns.encode(ss, [now] * len(ss)), args.repeat)
    rows.append(("worker: encode rows (Arrow)", t))
    store = open_store(settings)
    apply_migrations(store, settings.retention_days)
    table = f"{store.database}.spans"
    t, _ = timed(encoded, lambda body: store.insert(table, body, span_columns.FORMAT,
                                                    {"insert_deduplication_token": str(time.time_ns())}),
                 args.repeat, wall=True)
    rows.append(("worker: insert into chDB (wall)", t))

    print(f"\n{'stage':<36} {'µs/span':>8} {'spans/s':>10}")
    for label, seconds in rows:
        print(f"{label:<36} {seconds / n * 1e6:8.1f} {n / seconds:10,.0f}")
    ingest = sum(s for label, s in rows if label.startswith("ingest"))
    worker = sum(s for label, s in rows if label.startswith("worker") and "insert" not in label)
    print(f"{'ingest CPU stages, total':<36} {ingest / n * 1e6:8.1f} {n / ingest:10,.0f}")
    print(f"{'worker CPU stages, total (no insert)':<36} {worker / n * 1e6:8.1f} {n / worker:10,.0f}")

    # The worker's CPU stage as it runs in its process pool: one call per batch of 200 messages.
    policies = TenantPolicies(default_pii=PiiPolicy.MASK, hash_secret=b"bench")
    batches = [raws[i : i + 200] for i in range(0, len(raws), 200)]
    t, _ = timed(batches, lambda b: prepare(b, policies), args.repeat)
    print(f"{'prepare() per batch, whole':<36} {t / n * 1e6:8.1f} {n / t:10,.0f}")
    print(f"machine: {machine.summary()}")


if __name__ == "__main__":
    main()
