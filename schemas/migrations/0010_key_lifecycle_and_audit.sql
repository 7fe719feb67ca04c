-- Tenants can be disabled (their keys stop working); keys can expire (rotation gives the old key
-- a short expiry). Rows are still rewritten with a newer version, so reads use FINAL.
ALTER TABLE {db}.tenants ADD COLUMN IF NOT EXISTS disabled UInt8 DEFAULT 0;

ALTER TABLE {db}.api_keys ADD COLUMN IF NOT EXISTS expires_at Nullable(DateTime64(3, 'UTC'));

-- When each key was last used, written in batches by every process that checks keys (never one
-- write per request). Kept apart from api_keys so a usage flush never races a revocation's row.
CREATE TABLE IF NOT EXISTS {db}.api_key_usage
(
    key_hash     String,
    tenant_id    String,
    last_used_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(last_used_at)
ORDER BY key_hash;

-- Every mutating request on the query API: who (key prefix, tenant), what, when, the request id
-- and the answer's status. Written in batches off the response path.
CREATE TABLE IF NOT EXISTS {db}.audit_log
(
    at         DateTime64(3, 'UTC'),
    tenant_id  String,
    key_prefix String,
    method     LowCardinality(String),
    path       String,
    action     String,
    status     UInt16,
    request_id String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (tenant_id, at, request_id)
TTL toDateTime(at) + INTERVAL 400 DAY;
