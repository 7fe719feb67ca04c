-- Enrichment: which price a span's cost came from, the model version split off the model name,
-- and how many PII findings of each kind were made; plus the per-tenant policies that drive it.
ALTER TABLE {db}.spans
    ADD COLUMN IF NOT EXISTS price_source LowCardinality(String) DEFAULT '' AFTER cost_usd,
    ADD COLUMN IF NOT EXISTS model_version LowCardinality(String) DEFAULT '' AFTER model,
    ADD COLUMN IF NOT EXISTS pii_counts Map(LowCardinality(String), UInt32) AFTER attributes;

-- One row per tenant; a newer version replaces the policy.
CREATE TABLE IF NOT EXISTS {db}.tenant_pii_policy
(
    tenant_id  String,
    policy     LowCardinality(String),
    updated_at DateTime64(3, 'UTC'),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id;

-- Tenant price overrides in USD per million tokens; `deleted` = 1 removes one.
CREATE TABLE IF NOT EXISTS {db}.price_overrides
(
    tenant_id         String,
    provider          String,
    model             String,
    input_mtok        Decimal(38, 12),
    output_mtok       Decimal(38, 12),
    cached_input_mtok Nullable(Decimal(38, 12)),
    cache_write_mtok  Nullable(Decimal(38, 12)),
    reasoning_mtok    Nullable(Decimal(38, 12)),
    deleted           UInt8,
    updated_at        DateTime64(3, 'UTC'),
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, provider, model);
