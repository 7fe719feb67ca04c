"""Server engine: a ClickHouse server (or cluster) over HTTP through clickhouse-connect."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from llmscope.storage.base import Store, StoreError


def client_options(url: str, ca_file: Path | None = None, verify: bool = True) -> dict[str, Any]:
    """clickhouse_connect.get_client arguments for `url`: https:// is TLS, verified against
    `ca_file` (else the system's trust store) unless `verify` is off."""
    parsed = urlparse(url)
    secure = parsed.scheme == "https"
    options: dict[str, Any] = {
        "host": parsed.hostname or "localhost",
        "port": parsed.port or (8443 if secure else 8123),
        "username": parsed.username or "default",
        "password": parsed.password or "",
        "secure": secure,
        # No fixed session id: concurrent requests on one session fail with SESSION_IS_LOCKED.
        "autogenerate_session_id": False,
    }
    if secure:
        options["verify"] = verify
        if ca_file is not None:
            options["ca_cert"] = str(ca_file)
    return options


class ServerStore(Store):
    def __init__(self, url: str, database: str, ca_file: Path | None = None, verify: bool = True) -> None:
        import clickhouse_connect

        parsed = urlparse(url)
        self.database = database
        try:
            self._client = clickhouse_connect.get_client(**client_options(url, ca_file, verify))
        except Exception as exc:
            raise StoreError(f"cannot connect to ClickHouse at {parsed.hostname}:{parsed.port}: {exc}") from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        try:
            return self._client.query_arrow(sql, parameters=dict(params) if params else None)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.raw_insert(table, insert_block=body, settings=dict(settings or {}), fmt=fmt)
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()
