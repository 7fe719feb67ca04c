"""The storage adapter: one ClickHouse SQL dialect, two engines (embedded chDB, ClickHouse server)."""

from __future__ import annotations

from llmscope.settings import Settings
from llmscope.storage.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store"]


def open_store(settings: Settings) -> Store:
    if settings.embedded_store:
        from llmscope.storage.chdb_engine import ChdbStore

        return ChdbStore(settings.data_dir / "chdb", settings.clickhouse_database)
    from llmscope.storage.server_engine import ServerStore

    assert settings.clickhouse_url is not None
    return ServerStore(settings.clickhouse_url, settings.clickhouse_database, settings.clickhouse_ca_file, settings.clickhouse_verify)
