"""What settling inherited values costs the worker per batch (streams/inheritance.py).

Run: python bench/seed_spans.py --data-dir DIR --spans 1000000   (once)
     python bench/inherit_bench.py --data-dir DIR [--batches 20] [--traces 100] [--calls 4]

Opens the seeded chDB directory in this process. Each round stores one batch the way the worker
does (one INSERT of its span rows) and then settles it, in two shapes: "whole" (each trace arrives
with its root, so the pipeline resolved it already and settling only reads) and "root last" (the
model calls were stored by an earlier batch; the batch holds the roots that carry the user, so
settling rewrites every call), and "stated on every span" (context propagation: every call names
its user, session and prompt, so settling has nothing to resolve and reads nothing back). Prints
p50/p95 ms of the INSERT and of the settle, per shape.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conditions import Machine, header  # noqa: E402

from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import Store, open_store  # noqa: E402
from schemas import span_columns  # noqa: E402
from schemas.span import Span  # noqa: E402
from streams.inheritance import settle  # noqa: E402
from streams.stages.pipeline import _inherit_within  # noqa: E402

TENANT = "bench-inherit"


def _trace(start_ns: int, calls: int, every_span: bool = False) -> list[Span]:
    trace, root_id = os.urandom(16).hex(), os.urandom(8).hex()
    root = Span(TENANT, trace, root_id, "", "invoke_agent", "internal", "svc", start_ns, start_ns + 30 * 10**9,
                operation="invoke_agent", user_id="user-1", session_id="session-1", prompt_name="support")
    out = [root]
    for i in range(calls):
        t = start_ns + (i + 1) * 10**9
        out.append(Span(TENANT, trace, os.urandom(8).hex(), root_id, "chat", "client", "svc", t, t + 5 * 10**8,
                        operation="chat", provider="openai", request_model="gpt-4o", input_tokens=900,
                        output_tokens=120, usage_reported=True, attributes={"gen_ai.prompt": "x" * 2000}))
        if every_span:
            out[-1].user_id, out[-1].session_id, out[-1].prompt_name = root.user_id, root.session_id, root.prompt_name
    return out


def _store(store: Store, spans: list[Span]) -> tuple[float, float]:
    columns = span_columns.encode(spans, [time.time_ns()] * len(spans))
    t0 = time.perf_counter()
    store.insert(f"{store.database}.spans", columns, span_columns.FORMAT)
    t1 = time.perf_counter()
    starts = [s.start_time_ns for s in spans]
    settle(store, {TENANT: {s.trace_id for s in spans}}, min(starts), max(starts))
    return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--traces", type=int, default=100)
    parser.add_argument("--calls", type=int, default=4)
    args = parser.parse_args()
    store = open_store(load_settings(data_dir=args.data_dir))
    total = store.query(f"SELECT count() AS n FROM {store.database}.spans")["n"][0]
    header(f"one batch of {args.traces} traces x (1 root + {args.calls} model calls) stored, then settled; "
           f"{total:,} spans already in the table",
           f"{args.batches} batches per shape; wall clock per step; p50/p95")
    machine = Machine()
    shapes: dict[str, list[tuple[float, float]]] = {
        "whole": [], "root last: calls": [], "root last: roots": [], "stated on every span": []}
    now = time.time_ns() - 3600 * 10**9
    for b in range(args.batches):
        traces = [_trace(now + b * 10**9, args.calls) for _ in range(args.traces)]
        whole = [s for t in traces for s in t]
        _inherit_within(whole)
        shapes["whole"].append(_store(store, whole))
        traces = [_trace(now + b * 10**9, args.calls) for _ in range(args.traces)]
        shapes["root last: calls"].append(_store(store, [s for t in traces for s in t[1:]]))
        shapes["root last: roots"].append(_store(store, [t[0] for t in traces]))
        stated = [s for _ in range(args.traces) for s in _trace(now + b * 10**9, args.calls, every_span=True)]
        shapes["stated on every span"].append(_store(store, stated))
    for name, timings in shapes.items():
        for i, step in enumerate(("insert", "settle")):
            values = sorted(t[i] for t in timings)
            p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
            print(f"{name:20} {step:7} p50 {statistics.median(values):8.1f} ms   p95 {p95:8.1f} ms")
    print(machine.summary())
    store.close()


if __name__ == "__main__":
    main()
