"""The one settings object every role reads: environment `LLMSCOPE_*`, validated at start."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmscope import tls
from llmscope.redaction import redact_url

MiB = 1024 * 1024
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class SettingsError(Exception):
    """A setting has a bad value; the message names it in one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMSCOPE_", extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    data_dir: Path = Field(Path(".llmscope"), description="Where `up` keeps chDB data and the dev key.")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    # Real Kafka supports idempotent producers; the embedded tansu broker does not (InitProducerId
    # fails), so `up` switches this off and relies on acks=all plus idempotent sinks.
    kafka_idempotence: bool = True
    # Concurrent requests batch themselves while a produce is in flight; lingering only adds latency.
    kafka_linger_ms: int = Field(0, ge=0, le=1000)
    kafka_compression: Literal["zstd", "lz4", "gzip", "snappy", "none"] = "zstd"
    # How long the group waits for a silent worker before handing its partitions to another. A
    # worker restarted after a crash waits about this long (twice, on tansu) before it consumes.
    # Apache Kafka refuses less than its group.min.session.timeout.ms (6 s by default); `up`'s
    # embedded broker has no such floor and `up` uses 3 s (its worker heartbeats every second
    # from the consumer's own thread, so a busy event loop does not miss one).
    kafka_session_timeout_seconds: float = Field(10.0, ge=1.0, le=300.0)
    ingest_topic: str = "llmscope-ingest"
    deadletter_topic: str = "llmscope-deadletter"
    # Webhook events (alerts, anomalies, tests) on their way to delivery: schemas/notifications.py.
    events_topic: str = "llmscope-events"
    topic_partitions: PositiveInt = 4
    topic_replication: PositiveInt = 1
    produce_timeout_seconds: PositiveFloat = 5.0
    # Messages above this are split; stays under Kafka's default 1 MiB max message size.
    max_message_bytes: PositiveInt = 900 * 1024
    # Also split by span count, so one message is a bounded unit of work for the worker.
    max_spans_per_message: PositiveInt = 5_000

    clickhouse_url: str | None = Field(
        None, description="http(s)://user:password@host:8123 of a ClickHouse server; unset = embedded chDB."
    )
    clickhouse_database: str = "llmscope"
    retention_days: PositiveInt = 30

    redis_url: str | None = Field(None, description="redis://host:6379/0; unset = in-process equivalents.")

    ingest_host: str = "0.0.0.0"
    ingest_port: int = Field(4318, ge=0, le=65535)
    query_host: str = "0.0.0.0"
    query_port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: PositiveInt = Field(64 * MiB, description="OTLP body limit, enforced after decompression.")
    # OTel SDKs export at most 512 spans a request and a Collector's batch processor 8,192 by default.
    max_spans_per_request: PositiveInt = Field(100_000, description="More spans in one OTLP request get 413.")

    events_max_count: PositiveInt = Field(1000, description="Most SDK events in one POST /api/v1/events.")
    events_max_bytes: PositiveInt = Field(5 * MiB, description="SDK events body limit after decompression.")

    pii_policy: Literal["off", "detect", "mask", "hash", "drop"] = Field(
        "mask", description="Default PII policy for tenants without their own."
    )
    pii_hash_key: SecretStr | None = Field(None, description="Secret for the 'hash' PII policy (keyed per tenant).")
    policy_refresh_seconds: PositiveFloat = Field(5.0, description="How soon workers see policy and price changes.")

    api_key_cache_seconds: PositiveFloat = Field(
        5.0, description="How often each process re-reads the API keys: a new or revoked key takes effect within this."
    )
    rate_limit_per_key: PositiveFloat = Field(200.0, description="Requests per second per API key.")
    rate_limit_per_tenant: PositiveFloat = Field(500.0, description="Requests per second per tenant.")
    rate_limit_burst_seconds: PositiveFloat = Field(2.0, description="Bucket size, in seconds of the rate.")

    sink_batch_messages: PositiveInt = Field(200, description="Ingest messages (≈ requests) per ClickHouse insert.")
    sink_batch_seconds: PositiveFloat = 0.5
    sink_batch_bytes: PositiveInt = Field(16 * MiB, description="Most message bytes per worker batch.")
    worker_processes: int = Field(1, ge=0, description="Processes for decode/normalise/enrich; 0 = a thread.")
    worker_niceness: int = Field(5, ge=0, le=19, description=(
        "Scheduling niceness of those processes: when the cores are busy, answering exports and queries comes "
        "before preparing spans, which wait safely in Kafka."))
    worker_name: str = "llmscope-worker"

    # rollups and analytics
    rollup_lateness_seconds: PositiveInt = Field(
        7200, description="Hours ending more than this ago are compacted into hour/day rollups."
    )
    rollup_minute_interval_seconds: PositiveFloat = Field(
        1.0, description="How often the worker recomputes the minute rollups of newly stored spans."
    )
    rollup_compact_interval_seconds: PositiveFloat = Field(60.0, description="How often the worker compacts hours and days.")
    idle_poll_seconds: PositiveFloat = Field(
        10.0, description=("With nothing to do, how seldom the leader looks for minute rollups to recompute and "
                           "webhooks due (each second while busy); what this process stores wakes it at once.")
    )
    query_cache_ttl_seconds: float = Field(300.0, ge=0, description="Analytics cache TTL for past ranges; 0 = off.")
    query_cache_recent_ttl_seconds: float = Field(5.0, ge=0, description="TTL for ranges reaching the last minutes.")
    query_cache_prefix: str = "llmscope:qc"

    # --- live stream and console (query/stream.py, llmscope/live.py) ---
    live_channel_prefix: str = Field("llmscope:live", description="Redis pub/sub channel prefix; one channel per tenant.")
    live_queue_messages: PositiveInt = Field(10_000, description="Per-socket queue (shared messages); beyond it they are dropped and counted.")
    live_ping_seconds: PositiveFloat = Field(15.0, description="A ping message after this long without traffic.")
    live_max_connections: PositiveInt = Field(1000, description="Live sockets per query process; more are closed with 1013.")
    # --- end live stream ---

    # --- anomalies (streams/agents/anomalies.py) ---
    # The minute points the leader sends to the detectors, keyed by series: one partition owns a series.
    anomaly_points_topic: str = Field("llmscope-anomaly-points", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    # A minute is judged once it ended this long ago (the detector's DEFAULT_GRACE_SECONDS): late
    # spans of a judged minute are stored and counted, but never change its judgement.
    anomaly_grace_seconds: int = Field(120, ge=0, le=3600, description="Wait after a minute ends before judging it.")
    anomaly_tick_seconds: PositiveFloat = Field(10.0, description="How often the leader looks for newly closed minutes.")
    # Episodes found while a detector rebuilds its baseline from stored history (a new series, a
    # restarted `up`) are stored either way; only those this recent are also sent to webhooks.
    anomaly_notify_max_age_seconds: PositiveInt = Field(
        3600, description="Anomaly events older than this are stored but not sent to webhooks."
    )
    # --- end anomalies ---

    # --- alert rules (streams/agents/alerts.py) ---
    alert_tick_seconds: PositiveFloat = Field(
        60.0, description="How often the leader evaluates alert rules; each rule is evaluated once per whole minute."
    )
    # --- end alert rules ---

    # --- budgets (streams/agents/budgets.py, query/budgets.py) ---
    budget_tick_seconds: PositiveFloat = Field(
        15.0, description="How often the leader sums each budget's spend and emits the thresholds it reached."
    )
    budget_status_cache_seconds: float = Field(
        5.0, ge=0, description=("A budget status older than this is recomputed in the background (kept for twice "
                                "as long); 0 = no cache.")
    )
    # --- end budgets ---

    # --- webhooks (streams/agents/webhooks.py) ---
    webhook_allow_private: bool = Field(
        False, description="Let webhook URLs reach private, loopback and link-local addresses (on in `up`)."
    )
    webhook_poll_seconds: PositiveFloat = Field(1.0, description="How often the leader looks for due deliveries.")
    webhook_concurrency: PositiveInt = Field(16, description="Delivery attempts in flight per worker at most.")
    webhook_endpoint_concurrency: PositiveInt = Field(2, description="Attempts in flight to one endpoint at most.")
    webhook_timeout_seconds: PositiveFloat = Field(10.0, le=60, description="Deadline of one attempt (5 s to connect).")
    webhook_retry_delay_scale: float = Field(
        1.0, gt=0, le=1, description="Multiplies every retry delay (about a day in all); lower only to test."
    )
    # --- end webhooks ---

    # --- tenants, keys and audit (llmscope/tenants.py, query/admin_keys.py, llmscope/audit.py) ---
    api_key_rotation_grace_seconds: float = Field(
        86_400.0, ge=0, le=30 * 86_400, description="How long a rotated key keeps working beside its successor, by default."
    )
    api_key_last_used_flush_seconds: PositiveFloat = Field(5.0, description="How often each process writes when keys were last used.")
    key_invalidation_channel: str = Field(
        "llmscope:keys", description="Redis channel on which a revocation or a disabled tenant reaches every replica at once."
    )
    audit_flush_seconds: PositiveFloat = Field(1.0, description="How often the query API writes its audit rows.")
    audit_buffer_rows: PositiveInt = Field(100_000, description="Audit rows kept while the store is unreachable; beyond, the oldest go.")
    admin_url: str = Field("http://127.0.0.1:8000", description="Query API the `tenants` and `keys` commands talk to.")
    admin_key: SecretStr | None = Field(
        None, description="Admin key for the `tenants` and `keys` commands; default: <data-dir>/admin-api-key of `up`."
    )
    # --- end tenants, keys and audit ---

    # --- rate limits (ingest/ratelimit.py, ingest/tenant_limits.py, query/admin_limits.py) ---
    # An OTel SDK exports up to 512 spans a request, a Collector 8,192: a request costs its spans too.
    rate_limit_spans_per_key: PositiveFloat = Field(50_000.0, description="Spans (SDK events) per second per API key.")
    rate_limit_spans_per_tenant: PositiveFloat = Field(100_000.0, description="Spans (SDK events) per second per tenant.")
    rate_limit_refresh_seconds: PositiveFloat = Field(
        5.0, description="How often each ingest process re-reads the limits tenants have through the admin API."
    )
    # --- end rate limits ---

    # --- the embedded broker of `up` (llmscope/broker_rotation.py) ---
    # tansu's memory engine keeps every message: `up` moves to a fresh broker (and stops the old
    # one) once this one holds this much. Production Kafka keeps its own retention.
    broker_rotate_mib: PositiveInt = Field(64, description="`up` replaces its embedded broker once it uses this much memory.")
    broker_rotate_seconds: float = Field(0.0, ge=0, description="`up` also replaces it after this long; 0 = by memory only.")
    broker_rotate_check_seconds: PositiveFloat = Field(10.0, description="How often `up` looks at its broker's memory.")
    # --- end embedded broker ---

    # --- observability (llmscope/metrics.py, llmscope/logs.py) ---
    worker_host: str = "0.0.0.0"
    worker_port: int = Field(9464, ge=0, le=65535, description="The worker's /metrics, /health and /ready.")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log lines on stdout: JSON objects, or text; auto = text on a terminal, else JSON."
    )
    # --- end observability ---

    # --- encryption in transit (llmscope/tls.py, llmscope/kafka_security.py) ---
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain): with tls_key_file, ingest, query and the worker's port serve HTTPS."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_ca_file: Path | None = Field(
        None, description="Clients must present a certificate signed by this CA (mutual TLS); unset = any client."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = Field(None, description="CA of the brokers' certificates; unset = the system's trust store.")
    kafka_ssl_cert_file: Path | None = Field(None, description="Client certificate, for brokers that ask for one.")
    kafka_ssl_key_file: Path | None = Field(None, description="Private key of kafka_ssl_cert_file.")
    clickhouse_ca_file: Path | None = Field(None, description="CA of an https:// ClickHouse server; unset = the system's trust store.")
    clickhouse_verify: bool = Field(True, description="Verify an https:// ClickHouse server's certificate.")
    redis_ca_file: Path | None = Field(None, description="CA of a rediss:// Redis; unset = the system's trust store.")
    # --- end encryption in transit ---

    @field_validator("clickhouse_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscore)")
        return value

    @field_validator("ingest_topic", "deadletter_topic", "events_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("must be a Kafka topic name (letters, digits, '.', '_', '-')")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
        return value or None

    @field_validator("tls_ca_file", "kafka_ssl_ca_file", "clickhouse_ca_file", "redis_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            tls.client_context(value)  # loads now: a bad file fails the start, not the first connection
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        """Files that only work together are checked together, naming the settings."""
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("LLMSCOPE_TLS_CERT_FILE and LLMSCOPE_TLS_KEY_FILE go together: set both or neither")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("LLMSCOPE_TLS_CA_FILE (client certificates) needs LLMSCOPE_TLS_CERT_FILE and LLMSCOPE_TLS_KEY_FILE")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            _named("LLMSCOPE_TLS_CERT_FILE", tls.check_server_files, self.tls_cert_file, self.tls_key_file)
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("LLMSCOPE_KAFKA_SSL_CERT_FILE and LLMSCOPE_KAFKA_SSL_KEY_FILE go together: set both or neither")
        if self.kafka_ssl_cert_file is not None:
            _named("LLMSCOPE_KAFKA_SSL_CERT_FILE", tls.client_context, None, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if self.kafka_security_protocol == "SASL_SSL" and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError("LLMSCOPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs LLMSCOPE_KAFKA_SASL_USERNAME and LLMSCOPE_KAFKA_SASL_PASSWORD")
        tls_files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file)
        if self.kafka_security_protocol == "PLAINTEXT" and any(f is not None for f in tls_files):
            raise ValueError("LLMSCOPE_KAFKA_SSL_* files need LLMSCOPE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL")
        if self.clickhouse_ca_file is not None and not (self.clickhouse_url or "").startswith("https://"):
            raise ValueError("LLMSCOPE_CLICKHOUSE_CA_FILE needs an https:// LLMSCOPE_CLICKHOUSE_URL")
        if self.redis_ca_file is not None and not (self.redis_url or "").startswith("rediss://"):
            raise ValueError("LLMSCOPE_REDIS_CA_FILE needs a rediss:// LLMSCOPE_REDIS_URL")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, object]]:
        # The URLs may carry passwords (redis://:pw@host, https://user:pw@clickhouse): not in a repr.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) and name in _URL_FIELDS else value

    @property
    def https(self) -> bool:
        """Whether ingest, query and the worker's port serve HTTPS."""
        return self.tls_cert_file is not None

    @property
    def server_tls(self) -> dict[str, object]:
        """uvicorn.Config arguments for the settings' certificate (none: plain HTTP)."""
        return tls.server_options(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)

    @property
    def redis_connection_url(self) -> str | None:
        """What Redis clients connect with: redis_url, plus the CA file as redis-py's `ssl_ca_certs`
        (from_url hands query arguments to the connection)."""
        if self.redis_url is None or self.redis_ca_file is None:
            return self.redis_url
        separator = "&" if "?" in self.redis_url else "?"
        return f"{self.redis_url}{separator}{urlencode({'ssl_ca_certs': str(self.redis_ca_file)})}"

    @property
    def embedded_store(self) -> bool:
        return self.clickhouse_url is None


_URL_FIELDS = {"clickhouse_url", "redis_url", "admin_url", "kafka_bootstrap_servers"}


def _named(setting: str, check: Callable[..., object], *args: object) -> None:
    """Run a file check, its error prefixed with the setting it is about."""
    try:
        check(*args)
    except ValueError as exc:
        raise ValueError(f"{setting}: {exc}") from None


def load_settings(**overrides: object) -> Settings:
    """Build and validate settings; a bad value becomes one line naming `LLMSCOPE_<NAME>`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check over several settings names them in its message
            raise SettingsError(f"invalid settings: {first['msg'].removeprefix('Value error, ')}") from None
        name = "LLMSCOPE_" + "_".join(str(p) for p in first["loc"]).upper()
        raise SettingsError(f"invalid setting {name}: {first['msg'].removeprefix('Value error, ')}") from None

