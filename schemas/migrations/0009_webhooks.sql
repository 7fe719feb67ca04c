-- Webhook endpoints: one row per endpoint, rewritten on every change (a newer version replaces
-- it, `deleted` = 1 removes it); reads use FINAL. The secrets are kept in clear: HMAC signing
-- needs them, and they are never returned by a read (only at creation and on rotation).
-- `event_types` is the subscription when `all_event_types` = 0; previous_secrets is the JSON list
-- of rotated secrets still signing during their grace period.
CREATE TABLE IF NOT EXISTS {db}.webhook_endpoints
(
    tenant_id        String,
    endpoint_id      String,
    url              String,
    format           LowCardinality(String),
    description      String,
    all_event_types  UInt8,
    event_types      Array(LowCardinality(String)),
    enabled          UInt8,
    disabled_reason  Nullable(String),
    secret           String,
    previous_secrets String,
    created_at       DateTime64(3, 'UTC'),
    updated_at       DateTime64(3, 'UTC'),
    deleted          UInt8,
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, endpoint_id);

-- The delivery outbox: one row per (event, endpoint), the unit the worker delivers and retries.
-- A new row has version 0 and every later state (after an attempt) a larger one, so a replayed
-- event that inserts its row again can never reset a row already attempted or delivered.
-- `body` is rendered at the first attempt (or when the row is made) and sent unchanged on every
-- retry. Partitioned by the event's own time, which every version of a row shares.
CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries
(
    tenant_id        String,
    endpoint_id      String,
    event_id         String,
    event_type       LowCardinality(String),
    event_time       DateTime64(3, 'UTC'),
    event            String,
    body             String,
    -- pending, delivered or failed
    status           LowCardinality(String),
    attempts         UInt16,
    next_attempt_at  DateTime64(3, 'UTC'),
    last_status_code Nullable(UInt16),
    last_error       String,
    created_at       DateTime64(3, 'UTC'),
    updated_at       DateTime64(3, 'UTC'),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant_id, endpoint_id, event_id)
TTL toDateTime(event_time) + INTERVAL 30 DAY;

-- Every delivery attempt as it happened (append only): what the deliveries API lists.
CREATE TABLE IF NOT EXISTS {db}.webhook_attempts
(
    tenant_id        String,
    endpoint_id      String,
    event_id         String,
    event_type       LowCardinality(String),
    attempt          UInt16,
    attempted_at     DateTime64(3, 'UTC'),
    -- delivered, retry, gone or failed (streams/webhooks/delivery.py)
    result           LowCardinality(String),
    status_code      Nullable(UInt16),
    error            String,
    duration_ms      Float64,
    next_attempt_at  Nullable(DateTime64(3, 'UTC')),
    response_excerpt String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (tenant_id, endpoint_id, attempted_at)
TTL toDateTime(attempted_at) + INTERVAL 30 DAY
