-- Who called: user_id, session_id, prompt_name and prompt_version now hold the value in effect for a
-- span: its own, or else the one it inherits from its nearest ancestor that states it (or the
-- trace's root), filled in by the worker also when the ancestor arrives after the span
-- (streams/inheritance.py). `inherited` names the fields that came from an ancestor ('user_id',
-- 'session_id', 'prompt'), so the span's own statement stays known. Rows written before this
-- migration inherited nothing: the default says so, and their values keep their meaning until
-- streams.inheritance.settle_range settles them (then streams.compaction.rebuild_minutes).
ALTER TABLE {db}.spans
    ADD COLUMN IF NOT EXISTS inherited Array(LowCardinality(String)) DEFAULT [] AFTER prompt_version;

-- Sums that cannot wrap: a UInt64 sum of durations wraps after 30,500 week-long spans, silently.
-- Token and duration sums are kept as Decimal(38, 0) at every rollup level and summed so
-- (schemas/rollup.py, sum_sql); every value already stored converts exactly. Costs stay
-- Decimal(38, 12) and are summed as Decimal(76, 12); what each figure counts is unchanged (the
-- rollups keep every span, per operation; the API counts model calls by reading those groups).

ALTER TABLE {db}.rollup_minute
    MODIFY COLUMN input_tokens Decimal(38, 0),
    MODIFY COLUMN output_tokens Decimal(38, 0),
    MODIFY COLUMN cached_input_tokens Decimal(38, 0),
    MODIFY COLUMN cache_write_tokens Decimal(38, 0),
    MODIFY COLUMN reasoning_tokens Decimal(38, 0),
    MODIFY COLUMN duration_ns_sum Decimal(38, 0);

ALTER TABLE {db}.rollup_hour
    MODIFY COLUMN input_tokens Decimal(38, 0),
    MODIFY COLUMN output_tokens Decimal(38, 0),
    MODIFY COLUMN cached_input_tokens Decimal(38, 0),
    MODIFY COLUMN cache_write_tokens Decimal(38, 0),
    MODIFY COLUMN reasoning_tokens Decimal(38, 0),
    MODIFY COLUMN duration_ns_sum Decimal(38, 0);

ALTER TABLE {db}.rollup_day
    MODIFY COLUMN input_tokens Decimal(38, 0),
    MODIFY COLUMN output_tokens Decimal(38, 0),
    MODIFY COLUMN cached_input_tokens Decimal(38, 0),
    MODIFY COLUMN cache_write_tokens Decimal(38, 0),
    MODIFY COLUMN reasoning_tokens Decimal(38, 0),
    MODIFY COLUMN duration_ns_sum Decimal(38, 0);
