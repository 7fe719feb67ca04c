-- Alert rules, their evaluation state and the alerts they raise (schemas/alert_rows.py owns the rows).
--
-- alert_rules: one row per write of a tenant's rule; `version` (nanoseconds of the write) orders
-- them and readers use FINAL. A delete writes a tombstone (deleted = 1) that keeps the rule's last
-- body, so the evaluator can still describe the alerts it resolves because the rule is gone.
CREATE TABLE IF NOT EXISTS {db}.alert_rules
(
    tenant_id  LowCardinality(String),
    rule_id    String,
    rule       String,
    deleted    UInt8,
    version    UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, rule_id);

-- alert_state: the evaluator's state of one rule (streams/alerting.py RuleState as JSON), written
-- after the tick's alerts and notifications; a tombstone once a deleted rule has been closed.
CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    tenant_id  LowCardinality(String),
    rule_id    String,
    state      String,
    deleted    UInt8,
    version    UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, rule_id);

-- alerts: one row per alert (a rule's group that fired), version 1 while firing and 2 once
-- resolved. Alert ids are deterministic, so a tick replayed after a crash rewrites the same rows.
-- `data` is the alert as its webhook events carry it (schemas/alert_events.py AlertData).
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    tenant_id   LowCardinality(String),
    alert_id    String,
    rule_id     String,
    status      LowCardinality(String),
    group_key   String,
    fired_at    DateTime('UTC'),
    resolved_at Nullable(DateTime('UTC')),
    data        String,
    version     UInt8,
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fired_at)
ORDER BY (tenant_id, alert_id);
