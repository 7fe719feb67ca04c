"""Compaction: rebuild hour rollups from minute rollups and day rollups from hours, idempotently.

How it stays exact
------------------
* rollup_minute is keyed by source Kafka message, so redeliveries replace themselves (read FINAL).
* An hour is *closed* once it ends before `now - lateness`. Each run recomputes, from
  `rollup_minute FINAL`, every closed hour that is newly closed since the last run or that received
  minute rows since the last run (found by the server-side `inserted_at` column, looked at with a
  SCAN_SLACK overlap so an INSERT in flight during the previous scan is not missed). A recomputed
  hour is written with a higher `version`, so ReplacingMergeTree replaces the previous rows of each
  key; minute rows are only ever added, so the new set of keys is a superset of the old one.
* Days are recomputed the same way from `rollup_hour FINAL`, once every hour in them is closed.
* Only after the rows are written does the run advance `rollup_watermark`: hour rows are complete
  for hours < covered_until('hour'), day rows for days < covered_until('day') <= the hour one.
  Readers take days below the day watermark, hours below the hour watermark, and minutes for the
  rest; the ranges are disjoint, so nothing is counted twice, and a stale watermark only means more
  minute rows are read. A span arriving more than `lateness` after its start lands in its minute at
  once and reaches its hour/day at the next run (until then readers of that closed hour miss it).
* Running twice changes nothing: each recomputation yields the same sums for the same keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from llmscope.storage import Store
from streams.rollup import COUNTERS, DIMENSIONS, ROLLUP_DAY, ROLLUP_HOUR, ROLLUP_MINUTE, ROLLUP_WATERMARK

log = logging.getLogger(__name__)

SCAN_SLACK = timedelta(minutes=10)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HOUR, _DAY = timedelta(hours=1), timedelta(days=1)
_FMT = "%Y-%m-%d %H:%M:%S"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def floor_hour(t: datetime) -> datetime:
    return _utc(t).replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    return floor_hour(t).replace(hour=0)


def read_watermarks(store: Store) -> dict[str, tuple[datetime, datetime]]:
    """level -> (covered_until, scanned_at); missing levels are absent (nothing compacted yet)."""
    df = store.query(
        f"SELECT level, toUnixTimestamp(covered_until) AS covered, toUnixTimestamp64Micro(scanned_at) AS scanned "
        f"FROM {store.database}.{ROLLUP_WATERMARK} FINAL"
    )
    return {
        r["level"]: (
            datetime.fromtimestamp(r["covered"], timezone.utc),
            datetime.fromtimestamp(r["scanned"] / 1e6, timezone.utc),
        )
        for r in df.to_dicts()
    }


def _ranges(starts: Iterable[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Contiguous [lo, hi) runs of period starts, so each recomputation is one index-friendly range scan."""
    out: list[tuple[datetime, datetime]] = []
    for t in sorted(set(starts)):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + step)
        else:
            out.append((t, t + step))
    return out


def _aggregate_sql(db: str, target: str, source: str, time_col: str, source_time: str, period: str) -> str:
    sums = ",\n            ".join(f"sum({c}) AS {c}" for c in (*COUNTERS, "cost_usd"))
    dims = ", ".join(DIMENSIONS)
    return f"""
        INSERT INTO {db}.{target} (tenant_id, {time_col}, {dims}, {", ".join((*COUNTERS, "cost_usd"))}, latency_hist, version)
        SELECT tenant_id, {period}({source_time}) AS t, {dims},
            {sums},
            sumMap(latency_hist) AS latency_hist,
            toUnixTimestamp64Micro(now64(6)) AS version
        FROM {db}.{source} FINAL
        WHERE {source_time} >= {{lo:DateTime('UTC')}} AND {source_time} < {{hi:DateTime('UTC')}}
        GROUP BY tenant_id, t, {dims}
    """


def _recompute(store: Store, sql: str, ranges: list[tuple[datetime, datetime]]) -> None:
    for lo, hi in ranges:
        store.command(sql, {"lo": lo.strftime(_FMT), "hi": hi.strftime(_FMT)})


def _set_watermark(store: Store, level: str, covered: datetime, scanned_at_us: int) -> None:
    store.command(
        f"INSERT INTO {store.database}.{ROLLUP_WATERMARK} (level, covered_until, scanned_at, version) "
        "SELECT {level:String}, {covered:DateTime('UTC')}, fromUnixTimestamp64Micro({scanned:Int64}, 'UTC'), "
        "toUnixTimestamp64Micro(now64(6))",
        {"level": level, "covered": covered.strftime(_FMT), "scanned": scanned_at_us},
    )


def compact(store: Store, now: datetime, lateness: timedelta) -> None:
    """Bring rollup_hour and rollup_day up to date with rollup_minute for every closed hour/day."""
    db = store.database
    marks = read_watermarks(store)
    prev_hour, prev_scan = marks.get("hour", (EPOCH, EPOCH))
    prev_day = marks.get("day", (EPOCH, EPOCH))[0]
    # Watermarks never move back, even if a caller's clock does.
    hour_hi = max(prev_hour, floor_hour(_utc(now) - lateness))
    day_hi = max(prev_day, floor_day(hour_hi))

    # Server clock, read before scanning: rows inserted after it are found by the next run.
    scan_started_us = int(store.query("SELECT toUnixTimestamp64Micro(now64(6)) AS t")["t"][0])
    changed = store.query(
        f"""
        SELECT DISTINCT toUnixTimestamp(toStartOfHour(minute)) AS h FROM {db}.{ROLLUP_MINUTE}
        WHERE minute < {{hi:DateTime('UTC')}}
          AND (minute >= {{prev:DateTime('UTC')}} OR inserted_at >= {{since:DateTime64(6, 'UTC')}})
        """,
        {
            "hi": hour_hi.strftime(_FMT),
            "prev": prev_hour.strftime(_FMT),
            "since": (max(EPOCH, prev_scan - SCAN_SLACK)).strftime(_FMT + ".%f"),
        },
    )
    hours = [datetime.fromtimestamp(h, timezone.utc) for h in changed["h"].to_list()] if changed.height else []
    hour_sql = _aggregate_sql(db, ROLLUP_HOUR, ROLLUP_MINUTE, "hour", "minute", "toStartOfHour")
    _recompute(store, hour_sql, _ranges(hours, _HOUR))
    _set_watermark(store, "hour", hour_hi, scan_started_us)

    # Days: those touched by a recomputed hour, plus days that closed since the last run.
    days = {floor_day(h) for h in hours if h < day_hi}
    if day_hi > prev_day:
        closed = store.query(
            f"SELECT DISTINCT toUnixTimestamp(toStartOfDay(hour)) AS d FROM {db}.{ROLLUP_HOUR} "
            "WHERE hour >= {lo:DateTime('UTC')} AND hour < {hi:DateTime('UTC')}",
            {"lo": prev_day.strftime(_FMT), "hi": day_hi.strftime(_FMT)},
        )
        if closed.height:
            days |= {datetime.fromtimestamp(d, timezone.utc) for d in closed["d"].to_list()}
    day_sql = _aggregate_sql(db, ROLLUP_DAY, ROLLUP_HOUR, "day", "hour", "toStartOfDay")
    _recompute(store, day_sql, _ranges(days, _DAY))
    _set_watermark(store, "day", day_hi, scan_started_us)
    log.info("compacted %d hour(s) and %d day(s); covered to %s / %s", len(hours), len(days), hour_hi, day_hi)


def covered(store: Store) -> tuple[datetime, datetime]:
    """(day watermark, hour watermark) for readers; the epoch when nothing is compacted yet."""
    marks = read_watermarks(store)
    return marks.get("day", (EPOCH, EPOCH))[0], marks.get("hour", (EPOCH, EPOCH))[0]

