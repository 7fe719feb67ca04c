"""TLS contexts from certificate files: the one place PEM files are loaded, for the settings'
checks at start (a missing or unreadable file fails the role before it serves) and for the clients
and servers that use them (Kafka, ClickHouse, Redis; uvicorn for ingest, query and the worker)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any


def client_context(ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """A context that verifies the server (against `ca_file`, else the system's trust store) and
    presents `cert_file`/`key_file` when the server asks for a client certificate. Raises ValueError
    naming the file that does not load."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load CA certificates from {ca_file}: {_reason(exc)}") from None
    if cert_file is not None:
        _load_chain(context, cert_file, key_file)
    return context


def check_server_files(cert_file: Path, key_file: Path) -> None:
    """The certificate and key uvicorn will load, loaded once now: a bad file (or a key that does
    not match) fails the start, not the first handshake."""
    _load_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), cert_file, key_file)


def server_options(cert_file: Path | None, key_file: Path | None, ca_file: Path | None) -> dict[str, Any]:
    """uvicorn.Config arguments: HTTPS with the certificate and key; with `ca_file`, clients must
    present a certificate it signed (mutual TLS)."""
    if cert_file is None or key_file is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}
    if ca_file is not None:
        options.update(ssl_ca_certs=str(ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path | None) -> None:
    try:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the certificate {cert_file} with key {key_file}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, ssl.SSLError):  # e.g. NO_CERTIFICATE_OR_CRL_FOUND, KEY_VALUES_MISMATCH
        return exc.reason or str(exc)
    return exc.strerror or str(exc)
