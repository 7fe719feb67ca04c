"""How every Kafka client of ours connects: PLAINTEXT, SSL or SASL_SSL, built once from the
settings for both client libraries, so the ingest producer, the admin and lag clients (aiokafka)
and the worker (Faust, itself on aiokafka) can never disagree on the broker's security."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from llmscope import tls
from llmscope.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT


def _context(settings: Settings) -> ssl.SSLContext:
    return tls.client_context(settings.kafka_ssl_ca_file, settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file)


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol, "ssl_context": _context(settings)}
    if protocol == "SASL_SSL":
        assert settings.kafka_sasl_password is not None  # the settings' check makes sure
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """`broker_credentials` for the Faust app: Faust turns them into the same aiokafka arguments."""
    import faust  # only the worker needs it; ingest and query do not load Faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(_context(settings))
    assert settings.kafka_sasl_password is not None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=_context(settings),  # with a context, Faust speaks SASL_SSL
        mechanism=settings.kafka_sasl_mechanism,
    )
