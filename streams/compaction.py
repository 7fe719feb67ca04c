"""Compaction: minute rollups from the deduplicated spans, hours from minutes, days from hours.

How it stays exact
------------------
* The spans table is a ReplacingMergeTree on the span's identity (tenant, start minute, trace,
  span), so `spans FINAL` holds each span once however many times it was sent (client retries)
  or delivered (worker crashes, broker redelivery). Every rollup level is recomputed from it,
  never added to per message: rollup totals equal the sums over the distinct spans.
* Minutes: after a batch's spans INSERT succeeded, the sink marks each (tenant, minute) it touched
  in rollup_dirty. Each run of the minute compactor reads the marks it has not folded in yet and
  recomputes those minutes from `spans FINAL`. A mark becomes visible only after its spans did, so
  the recomputation, which starts after reading the mark, sees them. Marks are read back
  MARK_SLACK before the previous run's scan started, because a mark whose INSERT was in flight
  during that scan may carry an earlier `marked_at`; batches already folded in are skipped.
* An hour is *closed* once it ends before `now - lateness`. Each hour run recomputes, from
  `rollup_minute FINAL`, every closed hour that is newly closed since the last run or that received
  minute rows since the last run (found by the server-side `inserted_at` column, looked at with a
  SCAN_SLACK overlap for the same reason). Days are recomputed likewise from `rollup_hour FINAL`,
  once every hour in them is closed.
* A recomputation writes each group with a new `version` and a tombstone (`is_deleted`, one
  version lower) for every group the period had before, so a group that no longer exists (its
  spans were replaced by versions with other dimensions) disappears under FINAL instead of being
  counted on. Running twice changes nothing.
* Watermarks advance only after the rows are written: hour rows are complete for hours <
  covered_until('hour'), day rows for days < covered_until('day') <= the hour one. Readers take
  days below the day watermark, hours below the hour watermark, and minutes for the rest; the ranges
  are disjoint, so nothing is counted twice, and a stale watermark only means more minute rows are
  read. A span arriving more than `lateness` after its start lands in its minute at once and reaches
  its hour/day at the next hour run (until then readers of that closed hour miss it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from llmscope.storage import Store
from schemas.rollup import (
    COUNTERS,
    DIMENSIONS,
    ROLLUP_DAY,
    ROLLUP_DIRTY,
    ROLLUP_HOUR,
    ROLLUP_MINUTE,
    WIDE_SUMS,
    read_watermarks,
    span_aggregates_sql,
    sum_sql,
    write_watermark,
)
from schemas.times import EPOCH, floor_day, floor_hour, utc

log = logging.getLogger(__name__)

SCAN_SLACK = timedelta(minutes=10)
MARK_SLACK = timedelta(minutes=5)
# Well inside MARK_SLACK, so batches folded before an idle spell stay remembered across it.
IDLE_WATERMARK_SECONDS = 30.0
_HOUR, _DAY = timedelta(hours=1), timedelta(days=1)
_FMT = "%Y-%m-%d %H:%M:%S"
_VALUES = (*COUNTERS, "cost_usd", "latency_hist")
# A tombstone's values, typed as the new rows' (UNION ALL wants one type per column).
_ZEROS = {"latency_hist": "map()", "cost_usd": "toDecimal256(0, 12)", **{c: "toDecimal128(0, 0)" for c in WIDE_SUMS}}


def _server_now_us(store: Store) -> int:
    return int(store.query("SELECT toUnixTimestamp64Micro(now64(6)) AS t")["t"][0])


def _replace_sql(db: str, target: str, time_col: str, new_rows: str, where_target: str) -> str:
    """INSERT new versions of every group in a set of periods, plus tombstones one version lower for
    the groups those periods held before (new rows of the same key outrank their own tombstone)."""
    dims = ", ".join(DIMENSIONS)
    zeros = ", ".join(_ZEROS.get(c, "0") for c in _VALUES)
    return f"""
        INSERT INTO {db}.{target} (tenant_id, {time_col}, {dims}, {", ".join(_VALUES)}, version, is_deleted)
        SELECT tenant_id, {time_col}, {dims}, {zeros}, {{version:UInt64}} - 1, 1
        FROM {db}.{target} FINAL WHERE {where_target}
        UNION ALL
        SELECT tenant_id, t AS {time_col}, {dims}, {", ".join(_VALUES)}, {{version:UInt64}}, 0
        FROM ({new_rows})
    """


def recompute_minutes(store: Store, tenants: Iterable[str], minutes: Iterable[datetime]) -> None:
    """Recompute rollup_minute for every (tenant, minute) of tenants × minutes from `spans FINAL`."""
    tenant_list, minute_list = sorted(set(tenants)), sorted({m.strftime(_FMT) for m in minutes})
    if not tenant_list or not minute_list:
        return
    db, dims = store.database, ", ".join(DIMENSIONS)
    new_rows = f"""
        SELECT tenant_id, toStartOfMinute(start_time) AS t, {dims}, {span_aggregates_sql("s")}
        FROM {db}.spans AS s FINAL
        WHERE tenant_id IN {{tenants:Array(String)}} AND toStartOfMinute(start_time) IN {{minutes:Array(DateTime('UTC'))}}
        GROUP BY tenant_id, t, {dims}"""
    where = "tenant_id IN {tenants:Array(String)} AND minute IN {minutes:Array(DateTime('UTC'))}"
    store.command(
        _replace_sql(db, ROLLUP_MINUTE, "minute", new_rows, where),
        {"tenants": tenant_list, "minutes": minute_list, "version": _server_now_us(store)},
    )


def rebuild_minutes(store: Store, lo: datetime, hi: datetime) -> None:
    """Recompute every minute of [lo, hi) for all tenants from `spans FINAL`, a day per statement:
    the rebuild path when rollups must be derived anew from the spans (a bulk load, a changed rule)."""
    db, dims = store.database, ", ".join(DIMENSIONS)
    new_rows = f"""
        SELECT tenant_id, toStartOfMinute(start_time) AS t, {dims}, {span_aggregates_sql("s")}
        FROM {db}.spans AS s FINAL
        WHERE start_time >= {{lo:DateTime('UTC')}} AND start_time < {{hi:DateTime('UTC')}}
        GROUP BY tenant_id, t, {dims}"""
    where = "minute >= {lo:DateTime('UTC')} AND minute < {hi:DateTime('UTC')}"
    sql = _replace_sql(db, ROLLUP_MINUTE, "minute", new_rows, where)
    day = floor_day(lo)
    while day < hi:
        store.command(sql, {"lo": max(day, lo).strftime(_FMT), "hi": min(day + _DAY, hi).strftime(_FMT),
                            "version": _server_now_us(store)})
        day += _DAY


@dataclass
class MinuteCompactor:
    """Folds rollup_dirty marks into rollup_minute. `folded` remembers, within MARK_SLACK, which
    batches were already recomputed, so the overlap between runs costs no recomputation; a new
    compactor (a restart, a new leader) starts empty and recomputes the last MARK_SLACK once."""

    store: Store
    folded: dict[str, datetime] = field(default_factory=dict)  # batch -> marked_at
    # The minute watermark as this compactor last read or wrote it (it is the only writer while it
    # leads), and when it last wrote it: an idle pipeline re-writes it only every IDLE_WATERMARK_SECONDS.
    _scanned: datetime | None = None
    _written_at: float = 0.0

    def run(self) -> list[tuple[str, datetime]]:
        """Recompute every marked (tenant, minute) not folded in yet; returns them."""
        db = self.store.database
        if self._scanned is None:
            self._scanned = read_watermarks(self.store).get("minute", (EPOCH, EPOCH))[1]
        since = self._scanned - MARK_SLACK
        scan_started_us = _server_now_us(self.store)
        marks = self.store.query(
            f"SELECT tenant_id, toUnixTimestamp(minute) AS m, batch, toUnixTimestamp64Micro(marked_at) AS at "
            f"FROM {db}.{ROLLUP_DIRTY} WHERE marked_at >= {{since:DateTime64(6, 'UTC')}}",
            {"since": max(EPOCH, since).strftime(_FMT + ".%f")},
        ).to_dicts()
        fresh = [r for r in marks if r["batch"] not in self.folded]
        pairs = sorted({(r["tenant_id"], datetime.fromtimestamp(r["m"], timezone.utc)) for r in fresh})
        # One statement per tenant: the cross product of tenants × minutes could be large.
        by_tenant: dict[str, list[datetime]] = {}
        for tenant, minute in pairs:
            by_tenant.setdefault(tenant, []).append(minute)
        for tenant, minutes in by_tenant.items():
            recompute_minutes(self.store, [tenant], minutes)
        scan_started = datetime.fromtimestamp(scan_started_us / 1e6, timezone.utc)
        # With nothing new the watermark only has to move now and then (it bounds the next scan
        # and a new leader's first one); writing it every second is most of an idle worker's work.
        if fresh or time.monotonic() - self._written_at >= IDLE_WATERMARK_SECONDS:
            write_watermark(self.store, "minute", scan_started, scan_started_us)
            self._scanned, self._written_at = scan_started, time.monotonic()
        self.folded.update({r["batch"]: datetime.fromtimestamp(r["at"] / 1e6, timezone.utc) for r in fresh})
        horizon = scan_started - 2 * MARK_SLACK
        self.folded = {b: at for b, at in self.folded.items() if at >= horizon}
        return pairs


def _ranges(starts: Iterable[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    """Contiguous [lo, hi) runs of period starts, so each recomputation is one index-friendly range scan."""
    out: list[tuple[datetime, datetime]] = []
    for t in sorted(set(starts)):
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0], t + step)
        else:
            out.append((t, t + step))
    return out


def _recompute_level(store: Store, target: str, source: str, time_col: str, source_time: str, period: str,
                     ranges: list[tuple[datetime, datetime]]) -> None:
    db, dims = store.database, ", ".join(DIMENSIONS)
    sums = ", ".join(sum_sql(c) for c in (*COUNTERS, "cost_usd"))
    new_rows = f"""
        SELECT tenant_id, {period}({source_time}) AS t, {dims}, {sums}, sumMap(latency_hist) AS latency_hist
        FROM {db}.{source} FINAL
        WHERE {source_time} >= {{lo:DateTime('UTC')}} AND {source_time} < {{hi:DateTime('UTC')}}
        GROUP BY tenant_id, t, {dims}"""
    where = f"{time_col} >= {{lo:DateTime('UTC')}} AND {time_col} < {{hi:DateTime('UTC')}}"
    sql = _replace_sql(db, target, time_col, new_rows, where)
    for lo, hi in ranges:
        store.command(sql, {"lo": lo.strftime(_FMT), "hi": hi.strftime(_FMT), "version": _server_now_us(store)})


def compact(store: Store, now: datetime, lateness: timedelta) -> None:
    """Bring rollup_hour and rollup_day up to date with rollup_minute for every closed hour/day."""
    db = store.database
    marks = read_watermarks(store)
    prev_hour, prev_scan = marks.get("hour", (EPOCH, EPOCH))
    prev_day = marks.get("day", (EPOCH, EPOCH))[0]
    # Watermarks never move back, even if a caller's clock does.
    hour_hi = max(prev_hour, floor_hour(utc(now) - lateness))
    day_hi = max(prev_day, floor_day(hour_hi))

    # Server clock, read before scanning: rows inserted after it are found by the next run.
    scan_started_us = _server_now_us(store)
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
    _recompute_level(store, ROLLUP_HOUR, ROLLUP_MINUTE, "hour", "minute", "toStartOfHour", _ranges(hours, _HOUR))
    write_watermark(store, "hour", hour_hi, scan_started_us)

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
    _recompute_level(store, ROLLUP_DAY, ROLLUP_HOUR, "day", "hour", "toStartOfDay", _ranges(days, _DAY))
    write_watermark(store, "day", day_hi, scan_started_us)
    log.info("compacted %d hour(s) and %d day(s); covered to %s / %s", len(hours), len(days), hour_hi, day_hi)
