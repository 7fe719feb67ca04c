-- Rollups counted from distinct spans, not from Kafka messages.
--
-- Until now minute rollups were written per Kafka message and keyed by (topic, partition, offset):
-- a client retry (a new message) was counted again, and offsets repeat after a broker restart, so
-- batches were silently dropped as "duplicates" of older ones. From here on:
-- * spans stay a ReplacingMergeTree on the span's identity, now with the start *minute* (not hour)
--   in the key, so reading one recent minute does not merge a whole hour under FINAL;
-- * rollup_minute rows are recomputed by the worker from `spans FINAL` for every minute that
--   received spans (rollup_dirty marks them), so every level counts each span once, whatever was
--   sent or delivered twice; a recomputation writes a new version of each group and a tombstone
--   (is_deleted) for groups that no longer exist;
-- * hour and day rollups get the same tombstones;
-- * dead-lettered messages and spans are listed in dead_letters (metadata only: never the content,
--   which is unredacted).

CREATE TABLE IF NOT EXISTS {db}.spans_0005
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
    model_version       LowCardinality(String) DEFAULT '',
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Nullable(Decimal(38, 12)),
    price_source        LowCardinality(String) DEFAULT '',
    session_id          String,
    user_id             String,
    prompt_name         LowCardinality(String),
    prompt_version      LowCardinality(String),
    finish_reasons      Array(LowCardinality(String)),
    attributes          Map(LowCardinality(String), String),
    pii_counts          Map(LowCardinality(String), UInt32),
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
ORDER BY (tenant_id, toStartOfMinute(start_time), trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000, ttl_only_drop_parts = 1;

INSERT INTO {db}.spans_0005
SELECT tenant_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time, end_time, duration_ns,
       status_code, status_message, operation, provider, request_model, response_model, model, model_version,
       input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_usd, price_source,
       session_id, user_id, prompt_name, prompt_version, finish_reasons, attributes, pii_counts, resource_attributes,
       events, source, ingested_at
FROM {db}.spans;

EXCHANGE TABLES {db}.spans AND {db}.spans_0005;
DROP TABLE {db}.spans_0005;

CREATE TABLE IF NOT EXISTS {db}.rollup_minute_0005
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
    version             UInt64,
    is_deleted          UInt8 DEFAULT 0,
    -- Server time of the INSERT: hour compaction finds hours whose minutes changed since its last run.
    inserted_at         DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX idx_inserted_at inserted_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toDate(minute)
ORDER BY (tenant_id, minute, service_name, provider, model, operation, status_code, prompt_name, prompt_version)
TTL minute + INTERVAL {retention_days} DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;

-- Rebuilt from the spans, exactly as the worker recomputes a minute (streams/compaction.py); the
-- histogram bucket is rollup.bucket_sql('duration_ns') as it stood when this migration was written.
INSERT INTO {db}.rollup_minute_0005
    (tenant_id, minute, service_name, provider, model, operation, status_code, prompt_name, prompt_version,
     requests, errors, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens,
     cost_usd, cost_known, duration_ns_sum, latency_hist, version)
SELECT tenant_id, toStartOfMinute(start_time) AS m, service_name, provider, model, operation, status_code,
       prompt_name, prompt_version, count(), countIf(status_code = 'error'), sum(input_tokens), sum(output_tokens),
       sum(cached_input_tokens), sum(cache_write_tokens), sum(reasoning_tokens),
       sum(coalesce(cost_usd, toDecimal128(0, 12))), count(cost_usd), sum(duration_ns),
       sumMap(map(if(duration_ns < 1000, toInt16(-32768), toInt16(least(32767, ceil(log(duration_ns / 1e6) / 0.020000666706669435)))), toUInt64(1))),
       toUnixTimestamp64Micro(now64(6))
FROM {db}.spans FINAL
GROUP BY tenant_id, m, service_name, provider, model, operation, status_code, prompt_name, prompt_version;

EXCHANGE TABLES {db}.rollup_minute AND {db}.rollup_minute_0005;
DROP TABLE {db}.rollup_minute_0005;

CREATE TABLE IF NOT EXISTS {db}.rollup_hour_0005
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
    version             UInt64,
    is_deleted          UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, hour, service_name, provider, model, operation, status_code, prompt_name, prompt_version)
TTL hour + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;
INSERT INTO {db}.rollup_hour_0005 SELECT *, 0 FROM {db}.rollup_hour;
EXCHANGE TABLES {db}.rollup_hour AND {db}.rollup_hour_0005;
DROP TABLE {db}.rollup_hour_0005;

CREATE TABLE IF NOT EXISTS {db}.rollup_day_0005
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
    version             UInt64,
    is_deleted          UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant_id, day, service_name, provider, model, operation, status_code, prompt_name, prompt_version)
TTL day + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;
INSERT INTO {db}.rollup_day_0005 SELECT *, 0 FROM {db}.rollup_day;
EXCHANGE TABLES {db}.rollup_day AND {db}.rollup_day_0005;
DROP TABLE {db}.rollup_day_0005;

-- One row per (tenant, minute) each stored batch touched, written after the batch's spans INSERT
-- succeeded; the minute compactor recomputes exactly these minutes.
CREATE TABLE IF NOT EXISTS {db}.rollup_dirty
(
    tenant_id LowCardinality(String),
    minute    DateTime('UTC'),
    batch     String,
    marked_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY marked_at
TTL toDateTime(marked_at) + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    tenant_id   String,
    message_id  String,
    item        Int32,
    parked_at   DateTime64(3, 'UTC'),
    received_at DateTime64(9, 'UTC'),
    source      String,
    format      LowCardinality(String),
    trace_id    String,
    span_id     String,
    reason      String,
    size_bytes  UInt64
)
ENGINE = ReplacingMergeTree(parked_at)
PARTITION BY toYYYYMM(parked_at)
ORDER BY (tenant_id, message_id, item)
TTL toDateTime(parked_at) + INTERVAL {retention_days} DAY;
