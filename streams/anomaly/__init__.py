"""Anomaly detection over minute series, pure: closed minutes of a series in, episode events out.

`series` says what a series and a point are (and how rollup rows become points), `baseline` how a
metric's normal is learned, `detector` how minutes are scored and grouped into episodes. No I/O:
the worker's agent feeds points and keeps each series' state (`SeriesDetector.to_bytes`) in a table.
"""

from streams.anomaly.detector import AnomalyEvent, SeriesDetector, state_size
from streams.anomaly.series import (
    DEFAULT_GRACE_SECONDS,
    METRICS,
    MinutePoint,
    SeriesKey,
    epoch_minute,
    last_closed_minute,
    points_from_rollup_rows,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "METRICS",
    "AnomalyEvent",
    "MinutePoint",
    "SeriesDetector",
    "SeriesKey",
    "epoch_minute",
    "last_closed_minute",
    "points_from_rollup_rows",
    "state_size",
]
