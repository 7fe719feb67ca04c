-- Anomaly episodes: one row per episode of one metric of one series, rewritten as it changes.
-- The worker's anomaly agent inserts a new version of the row on every change (opened, peak
-- updated, closed); `version` orders them (the judged minute, times 4, plus the kind's rank, so a
-- close outranks an update of the same minute) and queries read FINAL. The overall series of a
-- tenant has is_overall = 1 and empty service/provider/model.
CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    tenant_id      LowCardinality(String),
    episode_id     String,
    is_overall     UInt8,
    service_name   LowCardinality(String),
    provider       LowCardinality(String),
    model          LowCardinality(String),
    metric         LowCardinality(String),
    direction      LowCardinality(String),
    -- 'open' or 'closed'; started_at is the first abnormal minute, ended_at the first minute back
    -- to normal (exclusive, null while open); observed/expected/score are of the minute that made
    -- this version.
    status         LowCardinality(String),
    started_at     DateTime('UTC'),
    ended_at       Nullable(DateTime('UTC')),
    observed       Nullable(Float64),
    expected       Nullable(Float64),
    score          Nullable(Float64),
    peak_at        DateTime('UTC'),
    peak_score     Float64,
    peak_observed  Float64,
    peak_expected  Float64,
    version        UInt64,
    updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (tenant_id, episode_id);
