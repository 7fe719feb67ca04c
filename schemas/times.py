"""The one time contract: what the span store can hold, how long a span may plausibly last, which
times the ingest and the query API accept, and the UTC helpers.

Every stage that accepts, stores or asks about times takes its bounds from here, so the ingest
never acknowledges a span the worker cannot store, and the query API never asks the store for a
range it cannot represent. (How far back the ingest accepts spans is the retention, a setting:
older spans would be dropped by the TTL at once.)
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

# Times the spans table can take as "seconds.nanoseconds" text: DateTime64(9) ends at 2262-04-11
# (the int64 nanosecond limit), and below 9 digits of seconds (1973-03-03) ClickHouse reads the
# text as a date form instead. A row outside fails its whole INSERT, on every retry.
MIN_STORABLE_NS = 10**17
MAX_STORABLE_NS = 2**63 - 1
STORABLE_YEARS = "1973..2262"  # how messages name that range

# Longer than any model call or agent run we have seen; a longer "span" is a clock or unit mistake,
# and one such outlier would dominate a tenant's average latency (and its latency histogram).
MAX_SPAN_DURATION_NS = 7 * NS_PER_DAY

# How far ahead of the ingest's clock a span may start (clock skew between hosts).
MAX_FUTURE_NS = NS_PER_DAY

# What an SDK event's timestamps may be: bounds that catch the usual unit mistake (seconds or
# milliseconds sent as nanoseconds), well inside the storable range.
EVENT_EARLIEST_NS = 946_684_800 * NS_PER_SECOND  # 2000-01-01T00:00:00Z
EVENT_LATEST_NS = 4_102_444_800 * NS_PER_SECOND  # 2100-01-01T00:00:00Z, exclusive

# The start of Unix time: the lowest watermark, the default when a level was never compacted.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# What the query API accepts for `start`/`end`: what DateTime64(9) can represent, from Unix time on.
EARLIEST_QUERY = EPOCH
LATEST_QUERY = datetime(2262, 4, 11, tzinfo=timezone.utc)


def storable(ns: int) -> bool:
    return MIN_STORABLE_NS <= ns < MAX_STORABLE_NS


def utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def from_ns(ns: int) -> datetime:
    """Unix nanoseconds as an aware UTC datetime (to the microsecond)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def floor_to(t: datetime, seconds: int) -> datetime:
    """`t` rounded down to a multiple of `seconds` since the epoch, in UTC."""
    return datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, timezone.utc)


def ceil_to(t: datetime, seconds: int) -> datetime:
    """`t` rounded up to a multiple of `seconds` since the epoch, in UTC."""
    return datetime.fromtimestamp(-(-math.ceil(t.timestamp()) // seconds) * seconds, timezone.utc)


def floor_hour(t: datetime) -> datetime:
    return utc(t).replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    return floor_hour(t).replace(hour=0)
