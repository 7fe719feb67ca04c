"""The roles behind `llmscope <role>`: each builds its components, serves, and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import faust
from fastapi import FastAPI

from ingest.app import create_ingest_app
from ingest.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from llmscope.auth import KeyResolver, create_key
from llmscope.batched_writer import BatchedWriter
from llmscope.broker import EmbeddedBroker
from llmscope.broker_rotation import BrokerGenerations, drain
from llmscope.http import Check, Server, make_server
from llmscope.kafka import IngestProducer, ensure_topics, refresh_consumer_lag
from llmscope.key_invalidation import KeyInvalidation
from llmscope.live import LiveHub, make_hub
from llmscope.metrics import refreshed_on_scrape
from llmscope.settings import Settings
from llmscope.storage import Store, open_store
from llmscope.storage.migrate import apply_migrations
from query.app import create_query_app
from streams.cpu_stage import CpuStage
from streams.health import create_worker_http_app, sink_writes
from streams.sink import StoreSink
from streams.worker import create_worker_app

log = logging.getLogger("llmscope")

DEV_TENANT = "dev"
DEV_SCOPES = {"ingest", "read"}
# `up` serves one person: its admin key manages every tenant (and so `llmscope tenants` works against it).
ADMIN_SCOPES = {"ingest", "read", "admin", "superadmin"}


class Stopping:
    """SIGINT/SIGTERM handling for a role: the first signal asks for an orderly stop; a second one
    (Ctrl-C pressed again) exits at once, after one line saying what that may lose. Children are
    started so that they outlive neither this process nor ignore it (see broker.py, streams/cpu_stage.py)."""

    def __init__(self, at_once_warning: str) -> None:
        self.event = asyncio.Event()
        self.at_once_warning = at_once_warning
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled)

    def _signalled(self) -> None:
        if not self.event.is_set():
            self.event.set()
            print("llmscope: stopping in order (press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
            return
        print(f"llmscope: stopping at once; {self.at_once_warning}", file=sys.stderr, flush=True)
        os._exit(130)


def _stop_event(at_once_warning: str = "work in progress is abandoned") -> asyncio.Event:
    return Stopping(at_once_warning).event


def _limiter(settings: Settings) -> RateLimiter:
    """Buckets in Redis, shared by every ingest replica; in process without Redis (`up`)."""
    url = settings.redis_connection_url
    return RedisRateLimiter(url) if url else LocalRateLimiter()


def _resolver(settings: Settings, store: Store) -> KeyResolver:
    return KeyResolver(store, settings.api_key_cache_seconds, settings.api_key_last_used_flush_seconds)


def _invalidation(settings: Settings, resolver: KeyResolver) -> KeyInvalidation:
    """Revocations from any replica reach this process's resolver (through Redis when configured)."""
    invalidation = KeyInvalidation(resolver, settings.redis_connection_url, settings.key_invalidation_channel)
    invalidation.start()
    return invalidation


def _audit(settings: Settings, store: Store) -> BatchedWriter:
    return BatchedWriter(store, "audit_log", settings.audit_flush_seconds, settings.audit_buffer_rows)


async def _serve(servers: list[Server]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        for t in tasks:
            if t.done():
                t.result()  # re-raise a bind error
                raise RuntimeError("HTTP server stopped during start-up")
        await asyncio.sleep(0.02)
    return tasks


async def _stop_servers(servers: list[Server], tasks: list[asyncio.Task[None]]) -> None:
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_ingest(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_event()
    store = open_store(settings)
    producer = IngestProducer(settings)
    try:
        await ensure_topics(settings)
        await producer.connect()
    except Exception as exc:  # start anyway: /ready reports it and requests get 503 until Kafka is back
        log.warning("Kafka not available at start: %s", exc)
    resolver = _resolver(settings, store)
    invalidation = _invalidation(settings, resolver)
    app = create_ingest_app(settings, store, producer, resolver, _limiter(settings))
    servers = [make_server(app, settings.ingest_host, settings.ingest_port, settings.server_tls)]
    tasks = await _serve(servers)
    log.info("ingest listening on %s", _url(settings, settings.ingest_host, settings.ingest_port))
    await stop.wait()
    await _stop_servers(servers, tasks)
    await producer.close()
    await invalidation.close()
    await resolver.close()
    store.close()


async def run_query(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_event()
    store = open_store(settings)
    live = make_hub(settings)  # Redis fan-out from the workers; without Redis nothing reaches live sockets
    resolver = _resolver(settings, store)
    invalidation = _invalidation(settings, resolver)
    audit = _audit(settings, store)
    app = create_query_app(settings, store, resolver, live, invalidation, audit)
    servers = [make_server(app, settings.query_host, settings.query_port, settings.server_tls)]
    tasks = await _serve(servers)
    log.info("query API and console listening on %s", _url(settings, settings.query_host, settings.query_port))
    await stop.wait()
    await _stop_servers(servers, tasks)
    await live.close()
    await invalidation.close()
    await resolver.close()
    await audit.close()
    store.close()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or _stop_event("batches not yet stored are redelivered to the next worker (nothing is lost)")
    store = open_store(settings)
    await ensure_topics(settings)
    live = make_hub(settings) if settings.redis_url else None  # publishes stored spans to query replicas
    app, sink = create_worker_app(settings, store, live)
    servers = [make_server(create_worker_http_app(sink), settings.worker_host, settings.worker_port, settings.server_tls)]
    tasks = await _serve(servers)
    await app.start()
    log.info("worker %s consuming %s; metrics and health on port %d", settings.worker_name, settings.ingest_topic, settings.worker_port)
    with refreshed_on_scrape(lambda: refresh_consumer_lag(settings)):
        await stop.wait()
    await app.stop()
    await _stop_servers(servers, tasks)
    if live is not None:
        await live.close()
    store.close()


def migrate(settings: Settings) -> list[str]:
    store = open_store(settings)
    try:
        return apply_migrations(store, settings.retention_days)
    finally:
        store.close()


def dev_key(store: Store, data_dir: Path, name: str = "dev-api-key", scopes: set[str] = DEV_SCOPES) -> str:
    """A dev tenant key, created on first use and kept in <data-dir>/<name> (only its owner reads it).

    The one `up` prints can send and read, not administer: it ends up in every application's
    environment. An admin key is made on request (`llmscope up --admin-key`)."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    key = create_key(store, DEV_TENANT, f"{name} created by llmscope up", scopes)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _url(settings: Settings, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    scheme = "https" if settings.https else "http"
    return f"{scheme}://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def _tls_lines(settings: Settings) -> list[str]:
    """What an exporter needs besides the https:// endpoint: trust in a private CA, and with mutual
    TLS its own certificate (the OTLP exporters' standard variables)."""
    lines = [f"  export OTEL_EXPORTER_OTLP_CERTIFICATE=/path/to/ca.pem   # if no public CA signed {settings.tls_cert_file}"]
    if settings.tls_ca_file is not None:
        lines += [
            f"  export OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=/path/to/client.pem   # signed by {settings.tls_ca_file}",
            "  export OTEL_EXPORTER_OTLP_CLIENT_KEY=/path/to/client-key.pem",
        ]
    return lines


def banner(settings: Settings, broker: EmbeddedBroker, key: str, admin_key: str | None = None) -> str:
    ingest = _url(settings, settings.ingest_host, settings.ingest_port)
    query = _url(settings, settings.query_host, settings.query_port)
    curl = "curl --cacert /path/to/ca.pem" if settings.https else "curl"
    lines = [
        f"LLMScope is up: tansu broker on {broker.bootstrap}, chDB in {settings.data_dir / 'chdb'}",
        "Point any OpenTelemetry exporter at it:",
        f"  export OTEL_EXPORTER_OTLP_ENDPOINT={ingest}",
        f"  export OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20{key}",
        *(_tls_lines(settings) if settings.https else []),
        f"Read traces: {curl} -H 'Authorization: Bearer {key}' {query}/api/v1/traces",
        f"Web console: {query}/   (sign in with the API key above)",
        f"Query API docs: {query}/docs   (API key saved in {settings.data_dir / 'dev-api-key'})",
    ]
    if admin_key:
        lines.append(f"Admin key (tenants, keys, prices, PII policy, audit): {admin_key}   (saved in {settings.data_dir / 'admin-api-key'})")
    lines.append("Ctrl-C stops everything (it first stores all it acknowledged; Ctrl-C again stops at once).")
    return "\n".join(lines)


async def run_up(
    settings: Settings, stop: asyncio.Event | None = None, announce: bool = True, admin_key: bool = False
) -> None:
    """Broker, migrations, ingest, worker and query in one process over chDB (see ARCHITECTURE.md)."""
    stop = stop or _stop_event("acknowledged messages not yet stored are lost (the embedded broker keeps them in memory)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The embedded broker is on loopback and speaks plain TCP, whatever the Kafka TLS settings say.
    # tansu has no idempotent producer (InitProducerId fails); acks=all still holds. And `up`'s own
    # defaults where a setting was not given: a webhook receiver in development is usually on this
    # machine (private addresses allowed), and tansu allows short group sessions (the worker
    # consumes seconds sooner after start).
    own = {name: value for name, value in (("webhook_allow_private", True), ("kafka_session_timeout_seconds", 3.0))
           if name not in settings.model_fields_set}
    settings = settings.model_copy(update={"kafka_idempotence": False, "kafka_security_protocol": "PLAINTEXT", **own})
    live = LiveHub()  # worker and query share the process: the live stream stays in it
    store: Store | None = None
    sink: StoreSink | None = None  # one for every worker generation: the apps' /ready watches it
    cpu = CpuStage(settings.worker_processes, settings.worker_niceness)  # one for every worker generation: rotations spawn none

    async def start_worker(current: Settings) -> faust.App:
        """A worker on `current`'s broker, returned once it consumes. No message may reach a new
        broker before: Faust would drop one fetched during the worker's recovery and commit past
        it (llmscope/broker_rotation.py, step 2)."""
        assert store is not None and sink is not None
        worker, _ = create_worker_app(current, store, live, sink=sink, cpu=cpu)
        await worker.start()
        await worker.tables.recovery.completed.wait()  # type: ignore[attr-defined]  # TableManager has it; TableManagerT lacks it
        return worker

    # The broker, the worker on it and the ingest producer's target are replaced together before
    # the broker grows too large (llmscope/broker_rotation.py).
    generations = BrokerGenerations(settings, start_worker, stop.set)
    # Started from this (the main) thread: the broker dies with the thread that started it.
    broker = generations.start_broker()
    async with AsyncExitStack() as exits:
        exits.callback(generations.stop_broker)
        settings = generations.settings
        store = open_store(settings)
        exits.callback(store.close)
        sink = StoreSink(store)
        exits.callback(cpu.close)  # after the last worker stops (callbacks run last-in, first-out)
        apply_migrations(store, settings.retention_days)
        key = dev_key(store, settings.data_dir)
        admin = dev_key(store, settings.data_dir, "admin-api-key", ADMIN_SCOPES) if admin_key else None
        await ensure_topics(settings)

        await generations.start_worker()
        exits.push_async_callback(generations.stop_worker)
        # The worker's metrics are in this process's registry: ingest's and query's /metrics serve them.
        exits.enter_context(refreshed_on_scrape(lambda: refresh_consumer_lag(generations.settings)))

        producer = generations.producer
        await producer.connect()
        # One resolver for both apps: a revocation through the admin API reaches ingest in the same instant.
        resolver = _resolver(settings, store)
        exits.push_async_callback(resolver.close)
        audit = _audit(settings, store)
        exits.push_async_callback(audit.close)
        ingest_app, query_app = up_apps(settings, store, producer, resolver, live, audit, sink)
        ingest_server = make_server(ingest_app, settings.ingest_host, settings.ingest_port, settings.server_tls)
        query_server = make_server(query_app, settings.query_host, settings.query_port, settings.server_tls)
        ingest_tasks = await _serve([ingest_server])
        query_tasks = await _serve([query_server])
        generations.run()
        if announce:
            ports = {"ingest_port": ingest_server.port, "query_port": query_server.port}  # port 0: the one it got
            print(banner(settings.model_copy(update=ports), broker, key, admin), flush=True)
        await stop.wait()
        await generations.close()  # a rotation in progress finishes first
        log.info("stopping: ingest first, then draining the broker into the store")
        await _stop_servers([ingest_server], ingest_tasks)
        await producer.close()
        # The embedded broker keeps messages in memory only: store everything acknowledged before it goes.
        await drain(generations.settings)
        await _stop_servers([query_server], query_tasks)


def up_apps(
    settings: Settings, store: Store, producer: IngestProducer, resolver: KeyResolver, live: LiveHub,
    audit: BatchedWriter, sink: StoreSink,
) -> tuple[FastAPI, FastAPI]:  # fmt: skip
    """`up`'s ingest and query apps. `up` has no worker port: their `/ready` also says whether the
    worker's sink can store (503 with the store's error while its writes fail)."""
    sink_check: dict[str, Check] = {"sink": sink_writes(sink)}
    ingest = create_ingest_app(settings, store, producer, resolver, _limiter(settings), sink_check)
    query = create_query_app(settings, store, resolver, live, KeyInvalidation(resolver), audit, sink_check)
    return ingest, query
