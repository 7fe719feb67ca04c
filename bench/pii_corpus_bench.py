"""PII quality and speed on a labelled corpus: the pre-change engine (bench/pii_legacy.py) and the
product engine side by side. Detections by kind (TP/FP/FN, precision, recall), false positives on
clean documents, and throughput (documents through `find_pii`, spans through `redact_span`)."""

# Run: python bench/pii_corpus_bench.py [--docs 1200] [--seed 20240607] [--repeat 5]
# Throughput is per CPU second of this process (median of --repeat runs), so other load on a shared
# machine costs less than in wall-clock time. The corpus: bench/pii_corpus.py.

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pii_legacy  # noqa: E402
from pii_corpus import Doc, generate  # noqa: E402

from schemas.span import Span, SpanEvent  # noqa: E402
from streams import pii as product_pii  # noqa: E402
from streams import pii_detect  # noqa: E402
from schemas.tenant_settings import PiiPolicy  # noqa: E402

KINDS = ("email", "phone", "card", "iban", "ssn", "ip", "secret")
ENGINES: dict[str, tuple[Callable[[str], Sequence[Any]], Callable[..., dict[str, int]]]] = {
    "old": (pii_legacy.find_pii, pii_legacy.redact_span),
    "new": (pii_detect.find_pii, product_pii.redact_span),
}


def score(corpus: list[Doc], find: Callable[[str], Sequence[Any]]) -> tuple[Counter[str], Counter[str], Counter[str], Counter[str]]:
    """(TP, FP, FN, FP in clean documents) by kind; a finding and a label match when the kinds are equal and they overlap."""
    tp, fp, fn, clean_fp = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    for doc in corpus:
        findings = list(find(doc.text))
        matched = set()
        for start, end, kind in doc.labels:
            hits = [i for i, f in enumerate(findings) if f.kind == kind and f.start < end and start < f.end]
            (tp if hits else fn)[kind] += 1
            matched.update(hits)
        for i, f in enumerate(findings):
            if i not in matched:
                fp[f.kind] += 1
                if not doc.labels:
                    clean_fp[f.kind] += 1
    return tp, fp, fn, clean_fp


def spans_of(corpus: list[Doc]) -> list[Span]:
    """GenAI spans: one document as the input messages, the next as the output, plus the usual attributes."""
    spans = []
    for i in range(0, len(corpus) - 1, 2):
        spans.append(Span(
            tenant_id="t1", trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id="", name="chat gpt-4o",
            kind="client", service_name="bench", start_time_ns=1, end_time_ns=2, operation="chat", provider="openai",
            request_model="gpt-4o", response_model="gpt-4o-2024-08-06",
            attributes={
                "gen_ai.system_instructions": '[{"type": "text", "content": "You are a helpful support assistant."}]',
                "gen_ai.input.messages": corpus[i].text,
                "gen_ai.output.messages": corpus[i + 1].text,
                "gen_ai.response.id": f"chatcmpl-{i:024x}",
                "gen_ai.request.temperature": "0.2",
                "server.address": "api.openai.com",
            },
            events=[SpanEvent(1, "gen_ai.choice", {"finish_reason": "stop"})],
        ))  # fmt: skip
    return spans


def cpu_rate(items: int, work: Callable[[], object], repeat: int, fresh: Callable[[], object] | None = None) -> float:
    runs = []
    for _ in range(repeat):
        if fresh:
            fresh()
        cpu = time.process_time()
        work()
        runs.append(time.process_time() - cpu)
    return items / statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    corpus = generate(args.seed, args.docs)
    labelled = sum(bool(d.labels) for d in corpus)
    size = sum(len(d.text) for d in corpus)
    print(f"{len(corpus)} documents ({labelled} with PII, {len(corpus) - labelled} clean), "
          f"{size / len(corpus):.0f} chars on average, seed {args.seed}\n")  # fmt: skip

    print(f"{'kind':<8}" + "".join(f"{'| ' + name + ': TP  FP  FN  precision recall':<46}" for name in ENGINES))
    scores = {name: score(corpus, find) for name, (find, _) in ENGINES.items()}
    for kind in (*KINDS, "all"):
        row = f"{kind:<8}"
        for tp, fp, fn, _ in scores.values():
            t, p, n = (sum(c.values()) for c in (tp, fp, fn)) if kind == "all" else (tp[kind], fp[kind], fn[kind])
            precision = t / (t + p) if t + p else 1.0
            recall = t / (t + n) if t + n else 1.0
            row += f"| {t:>5} {p:>3} {n:>3}   {precision:8.4f}  {recall:6.4f}        "
        print(row)
    for name, (_, _, _, clean_fp) in scores.items():
        print(f"false positives in the {len(corpus) - labelled} clean documents, {name}: {sum(clean_fp.values())} {dict(clean_fp)}")

    spans = spans_of(corpus)
    texts = [d.text for d in corpus]
    print(f"\nthroughput per CPU second, median of {args.repeat}:")
    for name, (find, redact) in ENGINES.items():
        docs_rate = cpu_rate(len(texts), lambda f=find: [f(t) for t in texts], args.repeat)  # type: ignore[misc]
        batch: list[list[Span]] = []
        span_rate = cpu_rate(
            len(spans), lambda r=redact: [r(s, PiiPolicy.MASK) for s in batch[0]], args.repeat,  # type: ignore[misc]
            fresh=lambda: batch[:1].clear() or batch.append(copy.deepcopy(spans)),
        )  # fmt: skip
        print(f"  {name}: find_pii {docs_rate:>8,.0f} docs/s ({docs_rate * size / len(texts) / 1e6:5.1f} MB/s);  "
              f"redact_span(mask) {span_rate:>8,.0f} spans/s ({1e6 / span_rate:5.1f} µs/span)")  # fmt: skip


if __name__ == "__main__":
    main()
