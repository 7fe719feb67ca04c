"""Seed a chDB directory with N synthetic spans over D days for T tenants, plus their rollups.

Run: python bench/seed_spans.py --data-dir /tmp/llmscope-bench [--spans 10000000] [--tenants 20] [--days 30]

Spans are generated inside ClickHouse with one `INSERT … SELECT … FROM numbers(N)` (seconds, not
minutes). Spans come in "messages" of --spans-per-message consecutive spans of one tenant and service,
like a batch exporter's OTLP request; the message number is encoded in the trace id. Minute rollups
are then derived from the spans as the worker derives them (`streams.compaction.rebuild_minutes`,
the bulk form of its minute compactor), and `streams.compaction.compact` builds hours and days.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conditions import Machine, header  # noqa: E402

from llmscope.settings import load_settings  # noqa: E402
from llmscope.storage import Store, open_store  # noqa: E402
from llmscope.storage.migrate import apply_migrations  # noqa: E402
from streams.compaction import compact, rebuild_minutes  # noqa: E402

MODELS = [("openai", "gpt-4o", "chat"), ("openai", "gpt-4o-mini", "chat"), ("anthropic", "claude-3-5-sonnet", "chat"),
          ("gcp.gemini", "gemini-2.5-pro", "chat"), ("openai", "text-embedding-3-small", "embeddings"),
          ("mistral_ai", "mistral-large", "chat")]  # fmt: skip
SERVICES = ["chat-api", "batch-summariser", "support-agent"]
PROMPTS = [("", ""), ("summarise", "v3"), ("triage", "v7"), ("answer", "v12")]


def _array(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def seed_spans(store: Store, n: int, tenants: int, days: int, per_message: int, now: datetime) -> None:
    db = store.database
    messages = max(1, n // per_message)
    start = int((now - timedelta(days=days)).timestamp())
    step_ns = days * 86400 * 10**9 // messages  # messages spread evenly over the whole window
    providers, models, ops = (_array([m[i] for m in MODELS]) for i in range(3))
    prompts = "[" + ", ".join(f"({_array([name])[1:-1]}, {_array([version])[1:-1]})" for name, version in PROMPTS) + "]"
    # h(k): a deterministic per-span hash stream; m: the message number.
    sql = f"""
    INSERT INTO {db}.spans (tenant_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time,
        end_time, duration_ns, status_code, status_message, operation, provider, request_model, response_model, model,
        input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_usd,
        session_id, user_id, prompt_name, prompt_version, source, ingested_at)
    SELECT tenant_id, trace_id, span_id, '', 'chat', 'client', service_name, start_time,
        addNanoseconds(start_time, duration_ns), duration_ns, status_code, '', operation, provider, model, model, model,
        input_tokens, output_tokens, cached, 0, reasoning, cost, session_id, user_id, prompt.1, prompt.2, 'otlp', start_time
    FROM (
        SELECT number AS i, intDiv(number, {per_message}) AS m,
            concat('tenant-', toString(m % {tenants})) AS tenant_id,
            concat(leftPad(hex(m), 16, '0'), leftPad(hex(i), 16, '0')) AS trace_id,
            leftPad(hex(i), 16, '0') AS span_id,
            {_array(SERVICES)}[1 + cityHash64(m, 1) % {len(SERVICES)}] AS service_name,
            1 + cityHash64(i, 2) % {len(MODELS)} AS mi,
            {providers}[mi] AS provider, {models}[mi] AS model, {ops}[mi] AS operation,
            if(cityHash64(i, 3) % 100 < 3, 'error', 'ok') AS status_code,
            {prompts}[1 + cityHash64(m, 4) % {len(PROMPTS)}] AS prompt,
            fromUnixTimestamp64Nano(toInt64({start} * 1000000000 + m * {step_ns} + cityHash64(i, 5) % 5000000000), 'UTC')
                AS start_time,
            -- lognormal latency, median ~0.9 s, long tail
            toUInt64(exp(20.6 + 1.1 * sqrt(-2 * log((cityHash64(i, 6) % 1000000 + 1) / 1000001))
                * cos(2 * pi() * (cityHash64(i, 7) % 1000000) / 1000000))) AS duration_ns,
            50 + cityHash64(i, 8) % 4000 AS input_tokens,
            if(operation = 'embeddings', 0, 5 + cityHash64(i, 9) % 800) AS output_tokens,
            cityHash64(i, 10) % 3 = 0 ? intDiv(input_tokens, 2) : 0 AS cached,
            model = 'gpt-4o' ? cityHash64(i, 11) % 200 : 0 AS reasoning,
            if(cityHash64(i, 12) % 10 = 0, NULL,
               toDecimal128(input_tokens * 0.0000025 + output_tokens * 0.00001, 12)) AS cost,
            concat('user-', toString(cityHash64(i, 13) % 5000)) AS user_id,
            concat('session-', toString(cityHash64(m, 14) % 50000)) AS session_id
        FROM numbers({n})
    )
    SETTINGS max_insert_threads = 2
    """
    store.command(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="llmscope data dir (chDB lives in <dir>/chdb)")
    parser.add_argument("--spans", type=int, default=10_000_000, help="number of spans (default 10,000,000)")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--spans-per-message", type=int, default=100, help="spans per synthetic OTLP request")
    parser.add_argument("--lateness-hours", type=float, default=load_settings().rollup_lateness_seconds / 3600)
    args = parser.parse_args()

    header(
        f"seeding {args.spans:,} spans over {args.days} days for {args.tenants} tenants, their minute rollups, "
        "and compaction into hours and days",
        "in process (chDB), wall clock of each step, one run",
    )
    machine = Machine()
    settings = load_settings(data_dir=args.data_dir, retention_days=max(30, args.days + 1))
    store = open_store(settings)
    try:
        apply_migrations(store, settings.retention_days)
        db = store.database
        if store.query(f"SELECT count() AS n FROM {db}.spans")["n"][0]:
            sys.exit(f"{args.data_dir} already holds spans; use an empty directory")
        now = datetime.now(timezone.utc)
        for label, step in (
            ("spans", lambda: seed_spans(store, args.spans, args.tenants, args.days, args.spans_per_message, now)),
            ("minute rollups", lambda: rebuild_minutes(store, now - timedelta(days=args.days + 1), now + timedelta(days=1))),
            ("compaction (hour, day)", lambda: compact(store, now, timedelta(hours=args.lateness_hours))),
        ):
            t0 = time.perf_counter()
            step()
            print(f"{label:<24} {time.perf_counter() - t0:8.1f} s", flush=True)
        for table in ("spans", "rollup_minute", "rollup_hour", "rollup_day"):
            n = store.query(f"SELECT count() AS n FROM {db}.{table}")["n"][0]
            print(f"{table:<24} {n:>12,} rows")
        total = store.query(f"SELECT sum(requests) AS n FROM {db}.rollup_minute FINAL")["n"][0]
        print(f"rollup_minute requests   {total:>12,} (must equal spans)")
        print(f"machine: {machine.summary()}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
