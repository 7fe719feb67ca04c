"""The rollup timers (leader only): minute rollups from newly stored spans a second or so after
they are stored (the spans agent wakes an idle timer: streams/pacing.py), hour and day rollups
once their late-data window has passed, and a last minute fold before the worker stops. Every
level is recomputed from the level below, so each run is idempotent (see streams/compaction.py for
how the totals stay exact)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import faust

from llmscope.settings import Settings
from llmscope.storage import Store, StoreError
from streams.compaction import MinuteCompactor, compact
from streams.pacing import IdlePacer

log = logging.getLogger(__name__)


def register(app: faust.App, settings: Settings, store: Store, pacer: IdlePacer) -> None:
    """`pacer` is woken by the spans agent once it has stored rollup marks (streams/pacing.py)."""
    minutes = MinuteCompactor(store)

    async def fold() -> bool:
        return bool(await asyncio.to_thread(minutes.run))

    @app.timer(interval=settings.rollup_minute_interval_seconds, on_leader=True)
    async def compact_minutes() -> None:
        """Minute rollups from the spans stored since the last run; idempotent like every level."""
        try:
            await pacer.poll(fold)
        except StoreError as exc:
            log.warning("minute rollups failed, will retry next interval: %s", exc)

    async def fold_last_marks(_sender: Any, *_args: Any, **_kwargs: Any) -> None:
        """The batches stored since the last run get their minute rollups before the worker goes,
        so a stopped pipeline's numbers are complete (the next leader would fold them anyway)."""
        try:
            await asyncio.to_thread(minutes.run)
        except StoreError as exc:
            log.warning("minute rollups not brought up to date before stopping: %s", exc)

    # mode's stub types async receivers as returning `Awaitable[None] | None` in a way no async def matches.
    app.on_before_shutdown.connect(fold_last_marks)  # type: ignore[arg-type]

    @app.timer(interval=settings.rollup_compact_interval_seconds, on_leader=True)
    async def compact_rollups() -> None:
        """Hour and day rollups from minute rollups; idempotent, so a retry or a second run is harmless."""
        lateness = timedelta(seconds=settings.rollup_lateness_seconds)
        try:
            await asyncio.to_thread(compact, store, datetime.now(timezone.utc), lateness)
        except StoreError as exc:
            log.warning("rollup compaction failed, will retry next interval: %s", exc)
