-- Tenants and their API keys. Only the SHA-256 of a key is stored; a key is revoked by writing
-- a newer version of its row, so reads use FINAL.
CREATE TABLE IF NOT EXISTS {db}.tenants
(
    tenant_id  String,
    name       String,
    created_at DateTime64(3, 'UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id;

CREATE TABLE IF NOT EXISTS {db}.api_keys
(
    key_hash   String,
    key_prefix String,
    tenant_id  String,
    name       String,
    scopes     Array(LowCardinality(String)),
    created_at DateTime64(3, 'UTC'),
    revoked    UInt8,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_hash;
