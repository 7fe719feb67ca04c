-- Metric rollups at three levels plus the compaction watermark. Exactness: minute rows are keyed
-- by their source Kafka message, so a redelivered message replaces its own rows (reads use FINAL);
-- hour/day rows are recomputed from the level below and replace themselves by version.
-- latency_hist: log buckets, index = ceil(ln(ms)/ln(gamma)), key -32768 = under 1 microsecond.
CREATE TABLE IF NOT EXISTS {db}.rollup_minute
(
    tenant_id           LowCardinality(String),
    minute              DateTime('UTC'),
    service_name        LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    operation           LowCardinality(String),
    status_code         LowCardinality(String),
    prompt_name         LowCardinality(String),
    prompt_version      LowCardinality(String),
    src_topic           LowCardinality(String),
    src_partition       UInt32,
    src_offset          UInt64,
    requests            UInt64,
    errors              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Decimal(38, 12),
    cost_known          UInt64,
    duration_ns_sum     UInt64,
    latency_hist        Map(Int16, UInt64),
    -- Server time of the INSERT: compaction finds hours that received rows since its last run.
    inserted_at         DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX idx_inserted_at inserted_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(minute)
ORDER BY (tenant_id, minute, service_name, provider, model, operation, status_code, prompt_name, prompt_version,
          src_topic, src_partition, src_offset)
TTL minute + INTERVAL {retention_days} DAY
-- Small granules: a read touches a few rows of one tenant's recent minutes, each with a histogram map.
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1, index_granularity = 1024;

CREATE TABLE IF NOT EXISTS {db}.rollup_hour
(
    tenant_id           LowCardinality(String),
    hour                DateTime('UTC'),
    service_name        LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    operation           LowCardinality(String),
    status_code         LowCardinality(String),
    prompt_name         LowCardinality(String),
    prompt_version      LowCardinality(String),
    requests            UInt64,
    errors              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Decimal(38, 12),
    cost_known          UInt64,
    duration_ns_sum     UInt64,
    latency_hist        Map(Int16, UInt64),
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, hour, service_name, provider, model, operation, status_code, prompt_name, prompt_version)
TTL hour + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;

CREATE TABLE IF NOT EXISTS {db}.rollup_day
(
    tenant_id           LowCardinality(String),
    day                 DateTime('UTC'),
    service_name        LowCardinality(String),
    provider            LowCardinality(String),
    model               LowCardinality(String),
    operation           LowCardinality(String),
    status_code         LowCardinality(String),
    prompt_name         LowCardinality(String),
    prompt_version      LowCardinality(String),
    requests            UInt64,
    errors              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Decimal(38, 12),
    cost_known          UInt64,
    duration_ns_sum     UInt64,
    latency_hist        Map(Int16, UInt64),
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, service_name, provider, model, operation, status_code, prompt_name, prompt_version)
TTL day + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;

-- level 'hour': rollup_hour is complete for hours < covered_until; 'day' likewise for days.
-- scanned_at: server time the last run started looking for changed minute rows.
CREATE TABLE IF NOT EXISTS {db}.rollup_watermark
(
    level         LowCardinality(String),
    covered_until DateTime('UTC'),
    scanned_at    DateTime64(6, 'UTC'),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY level;
