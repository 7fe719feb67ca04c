"""Anomaly detection in the worker: a leader timer turns closed minutes of the rollups into points,
an agent judges each series' points with its detector (streams/stages/anomaly), keeps the
detectors in a table and records the episodes.

The timer (leader only), every `anomaly_tick_seconds`: each minute that closed (ended at least
`anomaly_grace_seconds` ago) since the last one it sent is read from `rollup_minute FINAL` and sent,
for every known series (rows in the last 8 days, each tenant overall included), as (minute, point)
on the points topic, keyed by the series: a series with no row that minute gets None, which the
detector reads as silence. A new leader (a restart, a failover) starts START_BACK_MINUTES back; a
detector ignores minutes it already judged, so sending a minute twice is harmless.

The agent, per point: the series' detector comes from the table (a changelog topic: a restarted or
rebalanced worker continues with its baselines). A detector that is missing (a series new to it, or
an `up` restarted with an empty broker) is first warmed up from the series' stored minutes of the
last 8 days, and one that missed minutes (the leader was down) judges them from the store before
this one: history is never mistaken for silence, and a restart does not re-learn from zero.

Each event of the minute is then, unless the anomalies table already holds it (its version is
there): sent as a Notification on the events topic when an episode opened or closed (and the
minute is within `anomaly_notify_max_age_seconds`), inserted as a new version of the episode's
row, and published to the live stream. The detector is saved last, so a crash anywhere replays the
minute from the old state with the same episode ids, and the table check keeps the replay from
reporting anything twice (a crash between a send and its insert sends it once more, same id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT, StreamT, TableT

from llmscope.live import LiveHub
from llmscope.settings import Settings
from llmscope.storage import Store
from schemas.anomalies import row_version
from schemas.live import anomaly_message
from schemas.notifications import Notification
from streams.alerting import anomaly_event
from streams.anomaly_store import (
    episode_row,
    insert_episodes,
    known_series,
    minute_points,
    series_points,
    stored_versions,
)
from streams.events_topic import Send, events_sender
from streams.read_ahead import read_ahead
from streams.retrying import retrying
from streams.stages.anomaly import AnomalyEvent, MinutePoint, SeriesDetector, SeriesKey, last_closed_minute

log = logging.getLogger(__name__)

HISTORY_MINUTES = 8 * 1440  # how far back a series counts as known, and a warm-up reads
START_BACK_MINUTES = 5  # a new leader's first tick re-sends this many minutes; detectors fill older gaps
POINTS_BUFFER = 20_000  # points read ahead of the agent (small: a key and a minute's counts)
TABLE = "anomaly-detectors"

SendPoint = Callable[[bytes, bytes], Awaitable[Any]]


def encode_point(minute: int, point: MinutePoint | None) -> bytes:
    p = None if point is None else [point.requests, point.errors, point.cost_usd, point.tokens, point.latency_p95_ms]
    return json.dumps({"minute": minute, "point": p}, separators=(",", ":")).encode()


def decode_point(value: bytes) -> tuple[int, MinutePoint | None]:
    """(minute, point) of a points message; ValueError if it is not one."""
    try:
        raw = json.loads(value)
        minute, p = raw["minute"], raw["point"]
        if not isinstance(minute, int):
            raise ValueError("minute is not an integer")
        if p is None:
            return minute, None
        requests, errors, cost, tokens, p95 = p
        return minute, MinutePoint(int(requests), int(errors), float(cost), int(tokens), None if p95 is None else float(p95))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an anomaly point: {exc!r}") from None


class MinuteTicker:
    """The leader's side: which minutes to send next, read and sent (see the module docstring)."""

    def __init__(self, store: Store, grace_seconds: int) -> None:
        self.store, self.grace = store, grace_seconds
        self.sent_until: int | None = None  # the last minute sent by this process

    async def tick(self, send: SendPoint, now: float) -> int:
        """Send every newly closed minute; returns how many points were sent."""
        last = last_closed_minute(now, self.grace)
        first = last - START_BACK_MINUTES + 1
        if self.sent_until is not None:
            first = max(first, self.sent_until + 1)
        if first > last:
            return 0
        points = await asyncio.to_thread(minute_points, self.store, first, last)
        series = await asyncio.to_thread(known_series, self.store, last - HISTORY_MINUTES)
        futures = []
        for minute in range(first, last + 1):
            of_minute = points.get(minute, {})
            for key in sorted(series.union(of_minute), key=SeriesKey.encode):
                futures.append(await send(key.encode().encode(), encode_point(minute, of_minute.get(key))))
        await asyncio.gather(*futures)  # every point acknowledged before the minutes count as sent
        self.sent_until = last
        return len(futures)


class Judge:
    """The agent's side: one point of one series through its detector, its events recorded."""

    def __init__(self, store: Store, settings: Settings, notify: Send, live: LiveHub | None) -> None:
        self.store, self.settings, self.notify, self.live = store, settings, notify, live

    async def point(self, table: TableT, key_bytes: bytes, value: bytes) -> None:
        try:
            key = SeriesKey.decode(key_bytes.decode())
            minute, point = decode_point(value)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("dropping a malformed anomaly point (key %r): %s", key_bytes[:100], exc)
            return
        saved = self._restore(key, table.get(key_bytes))
        if saved is not None and saved.last_minute is not None and minute <= saved.last_minute:
            return  # judged already: a re-sent minute
        detector, events = await asyncio.to_thread(self._catch_up, key, saved, minute)
        events += detector.observe(minute, point)
        if events:
            await self._record(key, events)
        table[key_bytes] = detector.to_bytes()

    def _restore(self, key: SeriesKey, saved: bytes | None) -> SeriesDetector | None:
        if saved is None:
            return None
        try:
            return SeriesDetector.from_bytes(key, saved)
        except ValueError as exc:  # another version's state: rebuild it from the store
            log.warning("anomaly state of %r unreadable, rebuilding from history: %s", key.encode(), exc)
            return None

    def _catch_up(self, key: SeriesKey, detector: SeriesDetector | None, minute: int) -> tuple[SeriesDetector, list[AnomalyEvent]]:
        """A detector that has judged every minute before `minute`: warmed up from stored history
        when missing, its missed minutes judged from the store when behind. Blocking (a thread)."""
        behind = detector is None or detector.last_minute is None or detector.last_minute < minute - 1
        if not behind:
            assert detector is not None
            return detector, []
        first = minute - HISTORY_MINUTES
        if detector is not None and detector.last_minute is not None:
            first = max(first, detector.last_minute + 1)
        history = series_points(self.store, key, first, minute - 1)
        if detector is None:
            detector = SeriesDetector(key)
            if not history:
                return detector, []
            first = min(history)
        events: list[AnomalyEvent] = []
        for m in range(first, minute):
            events += detector.observe(m, history.get(m))
        return detector, events

    async def _record(self, key: SeriesKey, events: list[AnomalyEvent]) -> None:
        stored = await asyncio.to_thread(stored_versions, self.store, key.tenant, (e.episode_id for e in events))
        fresh = [e for e in events if row_version(e.minute, e.kind) > stored.get(e.episode_id, -1)]
        oldest_sent = time.time() - self.settings.anomaly_notify_max_age_seconds
        for e in fresh:
            webhook = anomaly_event(e.to_dict())
            if webhook is not None and (e.minute + 1) * 60 >= oldest_sent:
                await self.notify(Notification(key.tenant, webhook))  # before the row: see the module docstring
        if not fresh:
            return
        rows = [episode_row(e) for e in fresh]
        await asyncio.to_thread(insert_episodes, self.store, rows)
        if self.live is not None:  # stored, so readable: now tell live subscribers
            await self.live.publish(key.tenant, [anomaly_message(row, e.kind) for row, e in zip(rows, fresh)])


def register(app: faust.App, settings: Settings, store: Store, live: LiveHub | None) -> None:
    """The leader's timer, the agent and the detectors' table; `live` gets each episode change."""
    # A tick sends a point per series and minute at once, and after an `up` restart the first point
    # of every series warms its detector up (≈ 0.1 s each): see streams/read_ahead.py.
    points = read_ahead(app.topic(settings.anomaly_points_topic, key_serializer="raw", value_serializer="raw",
                                  partitions=settings.topic_partitions, internal=True), POINTS_BUFFER)
    detectors = app.Table(TABLE, default=None, partitions=settings.topic_partitions,
                          key_type=bytes, value_type=bytes, help="anomaly detector state per series")
    ticker = MinuteTicker(store, settings.anomaly_grace_seconds)
    judge = Judge(store, settings, events_sender(app, settings), live)

    async def send_point(key: bytes, value: bytes) -> Any:
        return await points.send(key=key, value=value)

    @app.timer(interval=settings.anomaly_tick_seconds, on_leader=True)
    async def tick_minutes() -> None:
        try:
            await ticker.tick(send_point, time.time())
        except Exception as exc:  # the store or the broker is down: the next tick sends these minutes too
            log.warning("anomaly points not sent, will retry next interval: %r", exc)

    @app.agent(points, name="anomalies")
    async def detect(stream: StreamT) -> None:
        event: EventT
        async for event in stream.events():
            key, value = event.message.key or b"", event.message.value or b""
            await retrying("anomaly judgement", lambda: judge.point(detectors, key, value))
