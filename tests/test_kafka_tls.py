"""Kafka over TLS: the ingest producer, the topic and lag clients (aiokafka) and a Faust worker all
speak SSL to a real tansu broker behind a TLS-terminating proxy (tansu itself speaks plain TCP, and
advertises the proxy, so every connection the clients open goes through it). A CA that did not
sign the broker's certificate is refused, saying why."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from llmscope.broker import EmbeddedBroker, free_port
from llmscope.errors import Unavailable
from llmscope.kafka import IngestProducer, consumer_lag, ensure_topics
from llmscope.kafka_security import aiokafka_options, faust_credentials
from llmscope.settings import Settings, load_settings
from llmscope.storage import Store
from streams.worker import create_worker_app
from tests.ingest.conftest import make_client
from tests.reliability.conftest import Load, new_tenant, private_settings
from tests.tls_proxy import Pki, TlsProxy, tls_proxy
from tests.waiting import eventually


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsProxy]:
    """A tansu broker reachable only through TLS: it advertises the proxy's address."""
    port = free_port()
    broker = EmbeddedBroker.start(advertised_port=port)
    try:
        with tls_proxy(("127.0.0.1", broker.port), pki.server_context(), port) as proxy:
            yield proxy
    finally:
        broker.stop()


def _over_tls(settings: Settings, proxy: TlsProxy, ca_file: object) -> Settings:
    # Validated like a role's settings at start (model_copy would skip the checks).
    overrides = {"kafka_bootstrap_servers": proxy.address, "kafka_security_protocol": "SSL", "kafka_ssl_ca_file": ca_file}
    return load_settings(**(private_settings(settings, "kafka-tls").model_dump() | overrides))


async def _stored(store: Store, tenant: str) -> int:
    frame = await store.aquery(f"SELECT count() AS n FROM {store.database}.spans FINAL WHERE tenant_id = {{t:String}}", {"t": tenant})
    return int(frame["n"][0])


async def test_producer_and_faust_worker_store_spans_through_a_tls_broker(
    tls_broker: TlsProxy, pki: Pki, settings: Settings, store: Store
) -> None:
    s = _over_tls(settings, tls_broker, pki.ca_file)
    assert aiokafka_options(s)["security_protocol"] == "SSL" and faust_credentials(s) is not None
    await ensure_topics(s)
    tenant, key = new_tenant(store, "kafka-tls")
    client, producer = await make_client(s, store)
    worker, _sink = create_worker_app(s, store)
    await worker.start()
    try:
        load = Load(client, key, spans=5)
        for _ in range(4):
            assert await load.one() == 200  # acknowledged by the broker, over TLS
        assert await eventually(lambda: _stored(store, tenant), timeout=30) == 20
        await eventually(lambda: _lag_is(s, 0), timeout=30)  # the worker committed, read over TLS too
    finally:
        await worker.stop()
        await client.aclose()
        await producer.close()


async def _lag_is(settings: Settings, expected: int) -> bool:
    return await consumer_lag(settings, settings.worker_name) == expected


async def test_a_ca_that_did_not_sign_the_broker_certificate_is_refused_saying_so(
    tls_broker: TlsProxy, pki: Pki, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = _over_tls(settings, tls_broker, pki.other_ca_file)
    producer = IngestProducer(s.model_copy(update={"produce_timeout_seconds": 2.0}))
    with caplog.at_level(logging.ERROR), pytest.raises(Unavailable, match="Kafka is unreachable"):
        await producer.connect()
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_plaintext_settings_give_plain_clients_and_sasl_ssl_needs_its_credentials(pki: Pki) -> None:
    assert aiokafka_options(load_settings()) == {} and faust_credentials(load_settings()) is None
    sasl = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username="llmscope", kafka_sasl_password="s3cret-pw", kafka_ssl_ca_file=pki.ca_file)
    options = aiokafka_options(sasl)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert options["sasl_plain_username"] == "llmscope" and options["sasl_plain_password"] == "s3cret-pw"
    credentials = faust_credentials(sasl)
    assert credentials is not None and credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(sasl)
