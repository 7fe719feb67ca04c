-- Spans of every tenant. ReplacingMergeTree on (tenant, hour, trace, span) makes a redelivered
-- span replace itself; exact reads use FINAL. Daily partitions let TTL drop whole parts.
CREATE TABLE IF NOT EXISTS {db}.spans
(
    tenant_id           LowCardinality(String),
    trace_id            String,
    span_id             String,
    parent_span_id      String,
    name                String,
    kind                LowCardinality(String),
    service_name        LowCardinality(String),
    start_time          DateTime64(9, 'UTC'),
    end_time            DateTime64(9, 'UTC'),
    duration_ns         UInt64,
    status_code         LowCardinality(String),
    status_message      String,
    operation           LowCardinality(String),
    provider            LowCardinality(String),
    request_model       LowCardinality(String),
    response_model      LowCardinality(String),
    model               LowCardinality(String),
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Nullable(Decimal(38, 12)),
    session_id          String,
    user_id             String,
    prompt_name         LowCardinality(String),
    prompt_version      LowCardinality(String),
    finish_reasons      Array(LowCardinality(String)),
    attributes          Map(LowCardinality(String), String),
    resource_attributes Map(LowCardinality(String), String),
    events              Array(Tuple(time DateTime64(9, 'UTC'), name String, attributes Map(LowCardinality(String), String))),
    source              LowCardinality(String),
    ingested_at         DateTime64(9, 'UTC'),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(start_time)
ORDER BY (tenant_id, toStartOfHour(start_time), trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;
