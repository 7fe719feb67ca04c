-- A tenant's own rate limits (the admin API's PUT /api/v1/admin/tenants/{id}/limits). A NULL
-- column means the settings' default (LLMSCOPE_RATE_LIMIT_*), so a tenant that set only its span
-- rate follows later changes of the other defaults. Every ingest process re-reads this table
-- every LLMSCOPE_RATE_LIMIT_REFRESH_SECONDS; the newest write of a tenant wins.
CREATE TABLE IF NOT EXISTS {db}.tenant_rate_limits
(
    tenant_id                     String,
    key_requests_per_second       Nullable(Float64),
    key_spans_per_second          Nullable(Float64),
    tenant_requests_per_second    Nullable(Float64),
    tenant_spans_per_second       Nullable(Float64),
    burst_seconds                 Nullable(Float64),
    updated_at                    DateTime64(3, 'UTC'),
    version                       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id;
