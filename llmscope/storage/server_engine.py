"""Server engine: a ClickHouse server (or cluster) over HTTP through clickhouse-connect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from llmscope.storage.base import Store, StoreError


class ServerStore(Store):
    def __init__(self, url: str, database: str) -> None:
        import clickhouse_connect

        parsed = urlparse(url)
        self.database = database
        try:
            # No fixed session id: concurrent requests on one session fail with SESSION_IS_LOCKED.
            self._client = clickhouse_connect.get_client(
                host=parsed.hostname or "localhost",
                port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                username=parsed.username or "default",
                password=parsed.password or "",
                secure=parsed.scheme == "https",
                autogenerate_session_id=False,
            )
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

    def insert_json(self, table: str, body: bytes, settings: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.raw_insert(table, insert_block=body, settings=dict(settings or {}), fmt="JSONEachRow")
        except Exception as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()
