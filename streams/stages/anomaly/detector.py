"""Scoring and episodes: one SeriesDetector per series turns its closed minutes into anomaly events.

Scoring
-------
For each metric a judged minute gets a score in robust standard deviations of the series, on the
metric's variance-stabilising scale g (series.Metric):
``(g(observed) - expected) / max(dispersion × noise(n), min_sigma)``, where noise(n) is the
sampling noise of a minute of n requests (observed n for per-request averages and quantiles, the
expected n for the cost total) and dispersion is what baseline.py learned. A metric is judged only
when the minute has at least `min_requests` requests and its baseline has learned WARMUP minutes.

Silence: for requests, a run of minutes with zero requests is also scored as a whole: observing no
request where Λ were expected (summed over the run) has probability exp(-Λ/max(dispersion, 2))
(Poisson, with requests assumed to come in bursts), turned into a normal score. A busy series that
stops scores far beyond the threshold in its first silent minute; a quiet one (a request a minute)
once enough silence has accumulated (about a quarter of an hour). While the silence is unlikely
(beyond SILENCE_HOLD σ) it is not learned as the new normal.

Episodes (per series and metric)
--------------------------------
* A minute is *bad* when its score is at least Z_OPEN (3.25) away, upwards or downwards. An
  episode opens when OPEN_BAD of the last OPEN_WINDOW minutes are bad in the same direction (two
  of three: one noisy minute never opens one, one noisy minute inside a real anomaly does not hide
  it). It starts at the first bad minute of that window; the event is "opened".
* While open, a minute is *abnormal* when its score is at least Z_CLOSE in the episode's direction
  (hysteresis: lower than Z_OPEN). The peak (largest score, with observed and expected then) is
  kept; "updated" is emitted when the peak grows to UPDATE_RATIO × the last reported peak.
* It closes after CLOSE_NORMAL consecutive minutes that are not abnormal (minutes that cannot be
  judged count as not abnormal: no data is not evidence of a problem); its end is the minute after
  its last abnormal one; the event is "closed". A flapping series therefore stays in one episode.
  If the other direction meets the opening rule meanwhile, the episode closes there and a new one
  opens.
* Episodes run in both directions for every metric, but only the metric's direction is reported
  (latency, error rate, cost and tokens per request up; traffic both ways): a latency drop is no
  anomaly, yet while it lasts it must not be learned as the normal a recovery would then exceed.
* Learning: a minute teaches its baseline at full rate when normal; not at all when its score is
  beyond Z_OPEN, during the first HOLD minutes of an episode, or while the traffic itself is
  anomalous (a traffic drop empties the cost and makes averages noisy); at ANOMALY_RATE once an
  episode has lasted HOLD minutes, so a lasting shift becomes the new normal within hours.
* Episode ids hash the series key, metric, direction and start minute, so a replay gives the same
  ids, and `observe` ignores minutes at or before the last one it judged, so replaying points a
  restored state already saw emits nothing twice.
"""
from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from streams.stages.anomaly.baseline import Baseline
from streams.stages.anomaly.series import BOTH, DOWN, EMPTY, METRICS, REQUESTS, UP, Metric, MinutePoint, SeriesKey

Z_OPEN = 3.25
OPEN_BAD, OPEN_WINDOW = 2, 3
Z_CLOSE = 2.0
CLOSE_NORMAL = 5
UPDATE_RATIO = 1.5
HOLD = 120  # minutes an open episode keeps its metric's baseline from learning at all
ANOMALY_RATE = 0.25  # then the baseline learns at this share of its rate: a shift that lasts is adopted
WARMUP = 1440  # minutes learned before a metric is judged: one day, so daily seasonality is known
MAX_GAP = 7 * 1440  # a gap longer than this is not replayed minute by minute (only its last week is)
MAX_SCORE = 1e6
SILENCE_DISPERSION = 2.0  # requests come in bursts: gaps are longer than a Poisson process's
SILENCE_HOLD = 1.0  # a silence this unlikely (in σ) is not learned as normal while it lasts

OPENED, UPDATED, CLOSED = "opened", "updated", "closed"
_NORMAL = NormalDist()
_NAN = float("nan")


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """One change of an anomaly episode. Times are epoch minutes; `end` is exclusive (the first
    minute back to normal) and set only when closed; observed/expected/score are the values of
    `minute`, the minute whose judgement produced the event."""

    kind: str  # OPENED, UPDATED or CLOSED
    episode_id: str
    series: SeriesKey
    metric: str
    direction: str  # "up" or "down"
    minute: int
    start: int
    end: int | None
    observed: float | None
    expected: float | None
    score: float | None
    peak_minute: int
    peak_score: float
    peak_observed: float
    peak_expected: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(self.series.labels())
        del out["series"]
        return out


def episode_id(key: SeriesKey, metric: str, direction: int, start: int) -> str:
    return hashlib.sha256(f"{key.encode()}\x1e{metric}\x1e{direction}\x1e{start}".encode()).hexdigest()[:32]


def silence_score(expected_requests: float, dispersion: float) -> float:
    """Normal score of seeing no request where `expected_requests` were expected (Poisson, overdispersed)."""
    lam = expected_requests / max(dispersion, SILENCE_DISPERSION)
    if lam < 0.7:  # p > 0.5: not evidence of anything
        return 0.0
    if lam < 700:
        return _NORMAL.inv_cdf(math.exp(-lam))
    return -math.sqrt(2 * lam)  # exp underflows; the normal tail's leading term


def score(metric: Metric, x: float, expected: float, n: int, dispersion: float) -> tuple[float, float]:
    """(score, σ): how many robust σ `x` lies from `expected` (on the metric's scale) in a minute of
    n requests (the expected number for a total), for a series whose dispersion is `dispersion`."""
    sigma = max(max(dispersion, metric.min_dispersion) * metric.noise(n), metric.min_sigma)
    return max(-MAX_SCORE, min(MAX_SCORE, (metric.to_scale(x) - expected) / sigma)), sigma


_EP = struct.Struct("<bbBBHqqdddqd" + "d" * 3 * OPEN_WINDOW)


class Episode:
    """The episode state machine of one metric of one series (see the module docstring)."""

    __slots__ = ("open", "direction", "bad_up", "bad_down", "normal_run", "start", "peak_minute", "peak_score",
                 "peak_observed", "peak_expected", "reported", "last_abnormal", "recent")

    def __init__(self) -> None:
        self.open = 0
        self.direction = 0
        self.bad_up = 0  # bit i: the minute i minutes ago was bad upwards
        self.bad_down = 0
        self.normal_run = 0
        self.start = 0
        self.peak_minute = 0
        self.peak_score = 0.0
        self.peak_observed = 0.0
        self.peak_expected = 0.0
        self.reported = 0.0
        self.last_abnormal = 0
        self.recent = [_NAN] * (3 * OPEN_WINDOW)  # (score, observed, expected) of the last minutes, newest first

    def learning_rate(self, minute: int, z: float | None) -> float:
        """How much of its usual rate the baseline may learn from this minute (module docstring)."""
        if self.open:
            return 0.0 if minute - self.start < HOLD else ANOMALY_RATE
        return 0.0 if z is not None and abs(z) >= Z_OPEN else 1.0

    def step(self, key: SeriesKey, metric: Metric, minute: int, z: float | None, x: float | None, mu: float | None,
             events: list[AnomalyEvent]) -> None:
        window = (1 << OPEN_WINDOW) - 1
        up = z is not None and z >= Z_OPEN
        down = z is not None and z <= -Z_OPEN
        self.bad_up = ((self.bad_up << 1) | up) & window
        self.bad_down = ((self.bad_down << 1) | down) & window
        self.recent = [_NAN if z is None else z, _NAN if x is None else x, _NAN if mu is None else mu, *self.recent[:-3]]
        for sign, bad, bits in ((UP, up, self.bad_up), (DOWN, down, self.bad_down)):
            if bad and sign != self.direction and bits.bit_count() >= OPEN_BAD:
                if self.open:  # turned the other way: this episode ends where the new one starts
                    self._close(key, metric, minute, minute - (bits.bit_length() - 1), z, x, mu, events)
                self._open(key, metric, minute, sign, bits, z, x, mu, events)
                return
        if self.open:
            self._while_open(key, metric, minute, z, x, mu, events)

    def _open(self, key: SeriesKey, metric: Metric, minute: int, sign: int, bits: int, z: float | None,
              x: float | None, mu: float | None, events: list[AnomalyEvent]) -> None:
        ago = bits.bit_length() - 1
        self.open, self.direction, self.normal_run = 1, sign, 0
        self.start, self.last_abnormal = minute - ago, minute
        self.peak_score = 0.0
        for i in range(ago + 1):
            if bits >> i & 1 and abs(self.recent[3 * i]) > abs(self.peak_score):
                self._set_peak(minute - i, self.recent[3 * i], self.recent[3 * i + 1], self.recent[3 * i + 2])
        self.reported = abs(self.peak_score)
        self._emit(OPENED, key, metric, minute, None, z, x, mu, events)

    def _while_open(self, key: SeriesKey, metric: Metric, minute: int, z: float | None, x: float | None,
                    mu: float | None, events: list[AnomalyEvent]) -> None:
        if z is not None and z * self.direction >= Z_CLOSE:
            self.normal_run, self.last_abnormal = 0, minute
            if abs(z) > abs(self.peak_score):
                assert x is not None and mu is not None
                self._set_peak(minute, z, x, mu)
                if abs(z) >= UPDATE_RATIO * self.reported:
                    self.reported = abs(z)
                    self._emit(UPDATED, key, metric, minute, None, z, x, mu, events)
            return
        self.normal_run += 1
        if self.normal_run >= CLOSE_NORMAL:
            self._close(key, metric, minute, self.last_abnormal + 1, z, x, mu, events)

    def _close(self, key: SeriesKey, metric: Metric, minute: int, end: int, z: float | None, x: float | None,
               mu: float | None, events: list[AnomalyEvent]) -> None:
        self._emit(CLOSED, key, metric, minute, end, z, x, mu, events)
        self.open, self.direction, self.normal_run = 0, 0, 0

    def close_now(self, key: SeriesKey, metric: Metric, minute: int, events: list[AnomalyEvent]) -> None:
        if self.open:
            self._close(key, metric, minute, self.last_abnormal + 1, None, None, None, events)

    def _set_peak(self, minute: int, z: float, x: float, mu: float) -> None:
        self.peak_minute, self.peak_score, self.peak_observed, self.peak_expected = minute, z, x, mu

    def _emit(self, kind: str, key: SeriesKey, metric: Metric, minute: int, end: int | None, z: float | None,
              x: float | None, mu: float | None, events: list[AnomalyEvent]) -> None:
        if metric.direction not in (BOTH, self.direction):
            return  # tracked (it holds the baseline) but not an anomaly of this metric
        events.append(AnomalyEvent(
            kind, episode_id(key, metric.name, self.direction, self.start), key, metric.name,
            "up" if self.direction == UP else "down", minute, self.start, end, x, mu, z,
            self.peak_minute, self.peak_score, self.peak_observed, self.peak_expected,
        ))

    def to_bytes(self) -> bytes:
        return _EP.pack(self.open, self.direction, self.bad_up, self.bad_down, self.normal_run, self.start,
                        self.peak_minute, self.peak_score, self.peak_observed, self.peak_expected, self.last_abnormal,
                        self.reported, *self.recent)

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Episode:
        e = cls()
        (e.open, e.direction, e.bad_up, e.bad_down, e.normal_run, e.start, e.peak_minute, e.peak_score,
         e.peak_observed, e.peak_expected, e.last_abnormal, e.reported, *recent) = _EP.unpack(data)
        e.recent = list(recent)
        return e


_SERIES = struct.Struct("<BqdI")
_VERSION = 1


class SeriesDetector:
    """Everything the detectors keep about one series: a baseline and an episode per metric, the
    last judged minute and the current run of silence. Feed it every closed minute in order."""

    __slots__ = ("key", "baselines", "episodes", "last_minute", "silent_expected", "silent_minutes")

    def __init__(self, key: SeriesKey) -> None:
        self.key = key
        self.baselines = [Baseline(m.multiplicative_level) for m in METRICS]
        self.episodes = [Episode() for _ in METRICS]
        self.last_minute: int | None = None
        self.silent_expected = 0.0  # requests expected over the current run of silent minutes
        self.silent_minutes = 0  # length of that run: a caller may retire a series silent for days

    def observe(self, minute: int, point: MinutePoint | None) -> list[AnomalyEvent]:
        """Judge epoch minute `minute` (closed; None = no data) and return the events it caused.

        Minutes at or before the last judged one are ignored (a replay emits nothing twice); a gap
        since the last judged minute is judged as silence first (at most its last MAX_GAP minutes)."""
        if self.last_minute is not None and minute <= self.last_minute:
            return []
        events: list[AnomalyEvent] = []
        if self.last_minute is not None:
            for gap in range(max(self.last_minute + 1, minute - MAX_GAP), minute):
                self._step(gap, EMPTY, events)
        self._step(minute, EMPTY if point is None else point, events)
        self.last_minute = minute
        return events

    def close_open(self, minute: int) -> list[AnomalyEvent]:
        """Close every open episode at `minute` (the caller retires a series it no longer ticks)."""
        events: list[AnomalyEvent] = []
        for metric, ep in zip(METRICS, self.episodes):
            ep.close_now(self.key, metric, minute, events)
        return events

    @property
    def open_episodes(self) -> int:
        """Episodes open now, counting those tracked in a direction that is not reported."""
        return sum(ep.open for ep in self.episodes)

    def _step(self, minute: int, point: MinutePoint, events: list[AnomalyEvent]) -> None:
        n = point.requests
        self.silent_minutes = 0 if n else self.silent_minutes + 1
        if n:
            self.silent_expected = 0.0
        traffic_rate, expected_requests = 1.0, float(n)
        for metric, base, ep in zip(METRICS, self.baselines, self.episodes):
            x = metric.value(point) if n >= metric.min_requests else None
            z = mu = None
            if x is not None:
                volume = round(expected_requests) if metric.total else n
                z, mu, rate = self._score_and_learn(metric, base, ep, minute, x, volume, traffic_rate)
                if metric is REQUESTS:
                    traffic_rate, expected_requests = rate, n if mu is None else mu
            ep.step(self.key, metric, minute, z, x, mu, events)

    def _score_and_learn(self, metric: Metric, base: Baseline, ep: Episode, minute: int, x: float, n: int,
                         traffic_rate: float) -> tuple[float | None, float | None, float]:
        """(score if judged, expected value, learning rate) of one metric's minute; learns from it."""
        y = metric.to_scale(x)
        pred = base.expected(minute)
        if pred is None:
            base.learn(minute, y, None, 0.0, 1.0)
            return None, None, 1.0
        noise = metric.noise(n)
        disp = base.dispersion(minute)
        z, sigma = score(metric, x, pred, n, disp)
        mu = metric.from_scale(pred)
        suspicious_silence = False
        if metric is REQUESTS and x == 0:
            self.silent_expected += mu
            silence = silence_score(self.silent_expected, disp)
            z = min(z, silence)
            suspicious_silence = silence <= -SILENCE_HOLD
        judged = base.learned >= WARMUP
        rate = 1.0
        if judged:
            rate = 0.0 if suspicious_silence else min(ep.learning_rate(minute, z), traffic_rate)
        base.learn(minute, y, pred, sigma, rate)
        base.learn_dispersion(minute, (y - pred) / noise, rate)
        return (z if judged else None), mu, rate

    # -- state -----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        head = _SERIES.pack(_VERSION, -1 if self.last_minute is None else self.last_minute, self.silent_expected,
                            self.silent_minutes)
        return head + b"".join(b.to_bytes() + e.to_bytes() for b, e in zip(self.baselines, self.episodes))

    @classmethod
    def from_bytes(cls, key: SeriesKey, data: bytes) -> SeriesDetector:
        expected = state_size()
        if len(data) != expected or data[0] != _VERSION:
            raise ValueError(f"not a version-{_VERSION} series state ({len(data)} bytes, expected {expected})")
        d = cls(key)
        _, last, d.silent_expected, d.silent_minutes = _SERIES.unpack_from(data)
        d.last_minute = None if last < 0 else last
        view, at, bsize = memoryview(data), _SERIES.size, Baseline.size()
        for i in range(len(METRICS)):
            d.baselines[i] = Baseline.from_bytes(view[at:at + bsize], METRICS[i].multiplicative_level)
            d.episodes[i] = Episode.from_bytes(view[at + bsize:at + bsize + _EP.size])
            at += bsize + _EP.size
        return d


def state_size() -> int:
    """Bytes of one series' state (fixed)."""
    return _SERIES.size + len(METRICS) * (Baseline.size() + _EP.size)

