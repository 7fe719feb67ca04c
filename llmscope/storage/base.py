"""The store interface every reader and writer uses; engines differ only in transport."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl


class StoreError(Exception):
    """The store failed or is unreachable; callers treat it as retryable."""


class Store(abc.ABC):
    """ClickHouse SQL with server-side parameters (`{name:Type}`), results as Arrow/polars.

    Methods are blocking; async callers use the `a*` wrappers, which run them on a thread so
    the event loop keeps serving while ClickHouse works.
    """

    database: str

    @abc.abstractmethod
    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abc.abstractmethod
    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table: ...

    @abc.abstractmethod
    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        """Insert `body`, rows in the ClickHouse input format `fmt` (JSONEachRow, ArrowStream), into
        `table` in one INSERT."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        # Imported here, not above: the CPU-stage processes import this module (through the CLI,
        # their main module) but never query, and polars costs each of them ≈25 MiB of RSS.
        import polars as pl

        return pl.from_arrow(self.query_arrow(sql, params))  # type: ignore[return-value]

    def insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], dedup_token: str | None = None
    ) -> None:
        if not rows:
            return
        # JSONEachRow also reads a JSON array; one orjson call is ~5x cheaper than one per row.
        body = orjson.dumps(rows)
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        self.insert(table, body, "JSONEachRow", settings)

    async def aquery(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        return await asyncio.to_thread(self.query, sql, params)

    def ping(self) -> bool:
        try:
            self.query_arrow("SELECT 1")
            return True
        except StoreError:
            return False
