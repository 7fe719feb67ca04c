"""`llmscope up` with a certificate and key serves HTTPS on both ports, and with a client CA asks
every client for a certificate (mutual TLS). A real OpenTelemetry exporter sends over HTTPS, trusting
the session's own CA as OTEL_EXPORTER_OTLP_CERTIFICATE would; the spans come back through the query
API over HTTPS; plain HTTP, an untrusted certificate and a missing client certificate all fail."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from tests.conftest import UpProcess, start_up, stop_up, wait_for
from tests.tls_proxy import Pki


@pytest.fixture(scope="module")
def https_up(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[UpProcess]:
    env = {"LLMSCOPE_TLS_CERT_FILE": str(pki.cert_file), "LLMSCOPE_TLS_KEY_FILE": str(pki.key_file),
           "LLMSCOPE_TLS_CA_FILE": str(pki.ca_file)}
    up = start_up(tmp_path_factory.mktemp("https-up"), env=env)
    yield up
    assert stop_up(up) == 0


def _client(pki: Pki, ca_file: Path | None = None, client_cert: bool = True) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca_file or pki.ca_file))
    if client_cert:
        context.load_cert_chain(pki.client_cert_file, pki.client_key_file)
    return httpx.Client(verify=context, timeout=10)


@pytest.fixture
def no_requests_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (under the Python OTLP exporter) prefers REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, when
    set, over the exporter's certificate file: this machine sets them to the system's trust store."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def _exporter(up: UpProcess, pki: Pki, endpoint: str | None = None, timeout: float = 5) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=endpoint or f"{up.ingest_url}/v1/traces", headers={"authorization": f"Bearer {up.key}"},
        certificate_file=str(pki.ca_file), client_certificate_file=str(pki.client_cert_file),
        client_key_file=str(pki.client_key_file), timeout=timeout,
    )  # fmt: skip


def test_otel_exporter_sends_over_https_and_the_query_api_answers_over_https(
    https_up: UpProcess, pki: Pki, no_requests_ca_bundle: None
) -> None:
    banner = https_up.log.read_text()
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT={https_up.ingest_url}" in banner and https_up.ingest_url.startswith("https://")
    assert "export OTEL_EXPORTER_OTLP_CERTIFICATE=" in banner and "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE" in banner

    provider = TracerProvider(resource=Resource.create({"service.name": "https-app"}))
    provider.add_span_processor(SimpleSpanProcessor(_exporter(https_up, pki)))
    with provider.get_tracer("tests").start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                             "gen_ai.usage.input_tokens": 21, "gen_ai.usage.output_tokens": 4})
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()

    with _client(pki) as client:
        def stored() -> dict | None:
            r = client.get(f"{https_up.query_url}/api/v1/traces", params={"service": "https-app"}, headers=https_up.auth())
            assert r.status_code == 200, r.text
            return next((t for t in r.json()["data"] if t["trace_id"] == trace_id), None)

        trace = wait_for(stored, timeout=30)
        assert (trace["input_tokens"], trace["output_tokens"]) == (21, 4)
        for url in (https_up.ingest_url, https_up.query_url):
            ready = client.get(f"{url}/ready")
            assert ready.status_code == 200 and ready.json()["checks"]["sink"] is True, ready.text


def test_plain_http_an_untrusted_certificate_and_no_client_certificate_are_refused(
    https_up: UpProcess, pki: Pki, no_requests_ca_bundle: None
) -> None:
    plain = https_up.query_url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/health", timeout=5)
    with _client(pki, ca_file=pki.other_ca_file) as untrusting, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.get(f"{https_up.query_url}/health")
    with _client(pki, client_cert=False) as anonymous, pytest.raises(httpx.TransportError):
        anonymous.get(f"{https_up.query_url}/health")
    with _client(pki) as client:
        assert client.get(f"{https_up.query_url}/health").status_code == 200

    # The OTel exporter pointed at the TLS port with http:// gets no answer it can count as sent.
    plain_endpoint = https_up.ingest_url.replace("https://", "http://") + "/v1/traces"
    exporter = _exporter(https_up, pki, endpoint=plain_endpoint, timeout=1)  # it retries until its timeout
    provider = TracerProvider()
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span) -> None:  # type: ignore[no-untyped-def]
            results.append(exporter.export([span]))

    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("tests").start_as_current_span("plain"):
        pass
    provider.shutdown()
    assert results == [SpanExportResult.FAILURE]
