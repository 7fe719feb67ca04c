"""Anomaly detection over minute series, pure: closed minutes of a series in, episode events out.

`series` says what a series and a point are (and how rollup rows become points), `baseline` how a
metric's normal is learned, `detector` how minutes are scored and grouped into episodes. No I/O,
no clock: the worker's agent feeds points and keeps each series' state in a table.

How the worker drives it (one SeriesDetector per series, state in a Faust table keyed by
`key.encode()`, fed by a topic keyed the same way so one partition owns a series)::

    # leader timer, once a minute: judge every minute that closed (with the grace) since the last run
    for m in range(last_ticked + 1, last_closed_minute(time.time()) + 1):
        rows = rollup_minute rows of minute m (FINAL)
        points = points_from_rollup_rows(rows, lambda h: quantile_from_histogram(h, 0.95)).get(m, {})
        for key in known_series:              # every series with rows in the last 8 days
            send(topic, key=key.encode(), value=(m, points.get(key)))   # None: no data = silence
    # agent, per message:
    state = table.get(key_text)
    det = SeriesDetector.from_bytes(key, state) if state else SeriesDetector(key)
    events = det.observe(minute, point)        # [] for a minute it already judged
    table[key_text] = det.to_bytes()          # state_size() bytes
    for e in events: insert e.to_dict() into the episodes table (id = e.episode_id, kind = e.kind)

A series the caller stops ticking (silent for days) can be retired with `close_open(minute)`.
"""

from streams.stages.anomaly.detector import AnomalyEvent, SeriesDetector, state_size
from streams.stages.anomaly.series import (
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
