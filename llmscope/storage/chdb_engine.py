"""Embedded engine: chDB in this process, persisted under the data directory."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from llmscope.storage.base import Store, StoreError


# The engine's settings, as a server's config file (the one way chDB takes both server and MergeTree
# defaults). Its MemoryWorker reads the allocator's statistics every 50 ms by default, to correct the
# memory tracker against a server's memory limit: 0.15 % of a core in an idle `up`, where no limit is
# ever near; once a second does the same job. And once more than 100 outdated parts are due for
# removal (minutes into a steady load of small inserts), MergeTree removes them on a pool of up to
# 128 threads, which the engine then keeps idle for the life of the process: 127 more threads (16 MiB
# of stacks and caches in a bare session; `up` held 199 threads against 82, and 6 MiB more anonymous
# memory on average over an hour), for a removal that takes milliseconds on a local disk in turn.
ENGINE_CONFIG = """<clickhouse>
  <memory_worker_period_ms>1000</memory_worker_period_ms>
  <merge_tree>
    <concurrent_part_removal_threshold>1000000000</concurrent_part_removal_threshold>
  </merge_tree>
</clickhouse>
"""
ENGINE_CONFIG_FILE = "llmscope-engine.xml"


class ChdbStore(Store):
    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.path = path
        # chDB allows one data path per process; one session serialised by a lock keeps
        # per-handle state (and the "open streaming query" pitfall) out of the picture.
        self._lock = threading.Lock()
        config = path / ENGINE_CONFIG_FILE
        config.write_text(ENGINE_CONFIG)
        try:
            self._session = session.Session(f"{path}?config-file={config}")
        except Exception as exc:  # chDB raises bare RuntimeError when another process holds the path
            raise StoreError(f"cannot open chDB data directory {path}: {exc}") from exc

    def _run(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> Any:
        texts = {k: _param_text(v) for k, v in params.items()} if params else None
        try:
            with self._lock:
                return self._session.query(sql, fmt, params=texts)
        except Exception as exc:
            raise StoreError(str(exc).strip()) from exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, "CSV", params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        result = self._run(sql, "Arrow", params)
        data = result.bytes()
        if not data:
            return pa.table({})
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()

    def insert(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        clause = ""
        if settings:
            # Setting values are our own tokens (topic/partition/offset ranges), never user input.
            clause = " SETTINGS " + ", ".join(f"{k}='{v}'" for k, v in settings.items())
        # A streaming insert takes the body's bytes as they are: put into the query text instead, a
        # batch of JSON rows was decoded, copied into the SQL and encoded again (a third of the insert's time).
        try:
            with self._lock, self._session.send_insert(f"INSERT INTO {table}{clause}", fmt) as inserter:
                inserter.append(body)
                inserter.finish()
        except Exception as exc:
            raise StoreError(str(exc).strip()) from exc

    def close(self) -> None:
        with self._lock:
            self._session.close()


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def _param_text(value: Any) -> str:
    """A parameter value as ClickHouse reads it (its Escaped text format), like clickhouse-connect
    sends it: unescaped, a tab fails the query and a backslash silently changes the value."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return str(value).translate(_ESCAPES)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.translate(_ESCAPES).replace("'", "\\'") + "'"
    return _param_text(value)
