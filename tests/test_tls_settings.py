"""TLS settings are checked at start, naming the setting: a file that is missing or does not load,
a certificate without its key, a CA for a plain-text URL. The ClickHouse server engine is handed
the CA and verification settings (there is no ClickHouse server here: the arguments it would
connect with are checked, not a connection)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from llmscope.settings import SettingsError, load_settings
from llmscope.storage.server_engine import client_options
from tests.tls_proxy import Pki, tls_proxy


def test_https_settings_load_the_certificate_and_key_and_give_uvicorn_its_arguments(pki: Pki) -> None:
    settings = load_settings(tls_cert_file=pki.cert_file, tls_key_file=pki.key_file, tls_ca_file=pki.ca_file)
    assert settings.https
    assert settings.server_tls == {
        "ssl_certfile": str(pki.cert_file), "ssl_keyfile": str(pki.key_file),
        "ssl_ca_certs": str(pki.ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }  # fmt: skip
    assert load_settings().server_tls == {} and not load_settings().https


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_cert_file": "{cert}"}, "LLMSCOPE_TLS_CERT_FILE and LLMSCOPE_TLS_KEY_FILE go together"),
        ({"tls_cert_file": "{missing}", "tls_key_file": "{key}"}, "LLMSCOPE_TLS_CERT_FILE: cannot load the certificate"),
        ({"tls_cert_file": "{cert}", "tls_key_file": "{ca}"}, "LLMSCOPE_TLS_CERT_FILE: cannot load the certificate"),
        ({"tls_ca_file": "{ca}"}, "LLMSCOPE_TLS_CA_FILE (client certificates) needs LLMSCOPE_TLS_CERT_FILE"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "{missing}"}, "LLMSCOPE_KAFKA_SSL_CA_FILE: cannot load CA certificates"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "{key}"}, "LLMSCOPE_KAFKA_SSL_CA_FILE: cannot load CA certificates"),
        ({"kafka_ssl_ca_file": "{ca}"}, "need LLMSCOPE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "needs LLMSCOPE_KAFKA_SASL_USERNAME and LLMSCOPE_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "{cert}"}, "LLMSCOPE_KAFKA_SSL_CERT_FILE and LLMSCOPE_KAFKA_SSL_KEY_FILE go together"),
        ({"redis_url": "redis://r:6379/0", "redis_ca_file": "{ca}"}, "LLMSCOPE_REDIS_CA_FILE needs a rediss://"),
        ({"redis_url": "http://r:6379/0"}, "LLMSCOPE_REDIS_URL: must start with redis://, rediss://"),
        ({"clickhouse_url": "http://ch:8123", "clickhouse_ca_file": "{ca}"}, "LLMSCOPE_CLICKHOUSE_CA_FILE needs an https://"),
    ],
)
def test_a_bad_tls_setting_fails_at_start_naming_it(pki: Pki, overrides: dict[str, str], message: str) -> None:
    files = {"cert": pki.cert_file, "key": pki.key_file, "ca": pki.ca_file, "missing": Path("/nonexistent/x.pem")}
    with pytest.raises(SettingsError) as failed:
        load_settings(**{name: value.format(**files) for name, value in overrides.items()})
    assert message in str(failed.value)


def test_clickhouse_https_gets_the_ca_file_and_verification(pki: Pki) -> None:
    settings = load_settings(clickhouse_url="https://llmscope:pw@ch.internal", clickhouse_ca_file=pki.ca_file)
    assert settings.clickhouse_url is not None
    options = client_options(settings.clickhouse_url, settings.clickhouse_ca_file, settings.clickhouse_verify)
    assert options == {
        "host": "ch.internal", "port": 8443, "username": "llmscope", "password": "pw", "secure": True,
        "verify": True, "ca_cert": str(pki.ca_file), "autogenerate_session_id": False,
    }  # fmt: skip
    unverified = client_options("https://ch.internal:9443", None, verify=False)
    assert (unverified["port"], unverified["secure"], unverified["verify"]) == (9443, True, False)
    assert "ca_cert" not in unverified
    plain = client_options("http://ch.internal")
    assert (plain["port"], plain["secure"]) == (8123, False) and "verify" not in plain


def test_clickhouse_connect_verifies_the_server_against_the_ca_file(pki: Pki) -> None:
    """The arguments reach clickhouse-connect's TLS handshake: against a TLS endpoint (a proxy to a
    closed port, as no ClickHouse server runs here) the session's CA passes the handshake and only
    the missing server behind it fails; another CA fails the handshake itself."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import OperationalError

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        with tls_proxy(closed.getsockname(), pki.server_context()) as proxy:
            url = f"https://llmscope:pw@{proxy.address}"
            for ca_file, verify_failed in ((pki.ca_file, False), (pki.other_ca_file, True), (None, True)):
                with pytest.raises(OperationalError) as failed:
                    clickhouse_connect.get_client(**client_options(url, ca_file), connect_timeout=2, query_retries=0)
                assert ("CERTIFICATE_VERIFY_FAILED" in str(failed.value)) is verify_failed, (ca_file, failed.value)
            with pytest.raises(OperationalError) as failed:  # verification off: any certificate
                clickhouse_connect.get_client(**client_options(url, pki.other_ca_file, verify=False), connect_timeout=2, query_retries=0)
            assert "CERTIFICATE_VERIFY_FAILED" not in str(failed.value)
