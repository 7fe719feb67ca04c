-- Budgets and the thresholds they have crossed (schemas/budget_rows.py owns the rows).
--
-- budgets: one row per write of a tenant's budget (schemas/budgets.py Budget as JSON); `version`
-- (nanoseconds of the write) orders them and readers use FINAL. A delete writes a tombstone.
CREATE TABLE IF NOT EXISTS {db}.budgets
(
    tenant_id  LowCardinality(String),
    budget_id  String,
    budget     String,
    deleted    UInt8,
    version    UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, budget_id);

-- budget_thresholds: the outbox of `budget.threshold` events. One row per threshold a budget
-- crossed in one period at one limit (`period_key`: the month's start, or for a rolling budget the
-- end of the window when it was crossed; schemas/budgets.py crossing_key), written BEFORE the event goes on the events topic (sent = 0),
-- then rewritten with sent = 1 once the broker has it. The key is what "once per period" means:
-- a row that exists is never crossed again, and a row with sent = 0 is sent again (same event id,
-- which the webhook fan-out deduplicates) by whichever worker leads next.
CREATE TABLE IF NOT EXISTS {db}.budget_thresholds
(
    tenant_id    LowCardinality(String),
    budget_id    String,
    period_key   DateTime('UTC'),
    threshold    UInt16,
    limit_usd    Decimal(38, 12),
    event_id     String,
    event        String,
    fired_at     DateTime64(3, 'UTC'),
    sent         UInt8,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(period_key)
ORDER BY (tenant_id, budget_id, period_key, threshold, limit_usd);
