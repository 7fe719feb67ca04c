"""Versioned schema migrations from schemas/migrations, applied once each, in order, idempotently."""

from __future__ import annotations

import logging
from importlib import resources

from llmscope.storage.base import Store

log = logging.getLogger(__name__)


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("schemas") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def _statements(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def apply_migrations(store: Store, retention_days: int) -> list[str]:
    """Apply pending migrations; return the names applied now. Retention is re-applied every run."""
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done = set(store.query(f"SELECT name FROM {db}.schema_migrations FINAL")["name"].to_list())
    applied = []
    for name, text in _migrations():
        if name in done:
            continue
        for statement in _statements(text):
            store.command(statement.format(db=db, retention_days=retention_days))
        store.command(f"INSERT INTO {db}.schema_migrations (name) VALUES ({{name:String}})", {"name": name})
        log.info("applied migration %s", name)
        applied.append(name)
    # Retention is a setting, so it may change between runs; don't rewrite existing parts now.
    store.command(
        f"ALTER TABLE {db}.spans MODIFY TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY "
        "SETTINGS materialize_ttl_after_modify = 0"
    )
    return applied
