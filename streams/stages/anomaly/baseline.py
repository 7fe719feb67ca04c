"""The robust seasonal baseline of one metric of one series: what a minute is expected to be, and
how much the series normally departs from that.

Model (on the metric's own scale, series.Metric.to_scale)
-----
Expected value = seasonal profile + level (× level for traffic, whose scale is the square root:
a level learned at night must carry over to a day with five times the traffic):

* The profile has one cell per hour of the week (168): each learns the mean of its hour over the
  past weeks, with a Huber-clipped running mean that becomes an exponential one (GAMMA_MIN, about
  two weeks of that hour's minutes) once warm. A minute's profile value interpolates linearly
  between the centres of the two nearest hours, so a smooth daily curve is tracked to well within
  the noise. Until a cell has been seen, the same hour of an earlier day stands in for it, and a
  new cell starts from that stand-in worth STAND_IN minutes (a new series gets daily seasonality
  after one day, weekly after one week).
* The level is a Huber-clipped EWMA (ALPHA, about an hour) of what the profile did not explain:
  growth, slow wander, shifts that last.
* Dispersion: one cell per hour of day (24, UTC) holds the series' robust scale in units of the
  metric's sampling noise (series.Metric.noise): the clipped mean absolute standardised residual,
  rescaled so that it estimates a standard deviation (a running median would do too, but tracks
  with more jitter for the same memory). Scaling by the noise model lets the scale follow the
  volume minute by minute (a quiet night minute is noisier than a busy one).

Robust to the anomalies themselves: every update is clipped at CLIP robust σ, and the caller
passes a learning `rate` (detector.py): 0 while a minute is anomalous or an episode is young, a
fraction once an episode has lasted, so a spike does not move the baseline at all while a shift
that lasts is adopted over hours (and its episode then closes).

State is fixed in size (see `size`: 972 bytes) and held as float32/uint8 arrays whose values are
rounded when written, so what `to_bytes` writes is exactly what the next update reads: a restored
baseline continues bit for bit as an uninterrupted one.
"""
from __future__ import annotations

import math
import struct
from array import array

HOURS_PER_WEEK = 168
HOURS_PER_DAY = 24
MONDAY = 72  # epoch hour 0 is a Thursday: +72 h makes hour-of-week 0 Monday 00:00 UTC

ALPHA = 1 / 60  # level: EWMA weight per minute
LEVEL_MAX = 100.0  # bounds of a multiplicative level
GAMMA_MIN = 1 / 120  # profile cell: final EWMA weight per minute of its hour (60 such minutes a week)
BETA_MIN = 1 / 240  # dispersion cell: final EWMA weight per minute of its hour of day
STAND_IN = 10  # weight, in minutes, of the earlier day's value a new hour-of-week cell starts from
CLIP = 2.0  # Huber clip of location updates, in robust σ
DISP_CLIP = 3.0  # clip of dispersion updates, in current dispersions
DISP_PRIOR = 10  # weight, in minutes, of a dispersion cell's starting value of 1
_MAX_COUNT = 255
# 1 / E[min(|Z|, 3)] for a standard normal Z: turns a clipped mean absolute deviation into σ.
_K_CLIPPED = 1 / (2 * (1 / math.sqrt(2 * math.pi)) * (1 - math.exp(-DISP_CLIP**2 / 2)) + DISP_CLIP * math.erfc(DISP_CLIP / math.sqrt(2)))

_HEAD = struct.Struct("<dI")


class Baseline:
    """`multiplicative`: the level multiplies the profile instead of adding to it (traffic on the
    square-root scale: a level learned at night must carry over to a day with five times the traffic)."""

    __slots__ = ("multiplicative", "loc", "count", "disp", "disp_count", "level", "learned")

    def __init__(self, multiplicative: bool = False) -> None:
        self.multiplicative = multiplicative
        self.loc = array("f", bytes(4 * HOURS_PER_WEEK))
        self.count = array("B", bytes(HOURS_PER_WEEK))
        self.disp = array("f", [1.0] * HOURS_PER_DAY)
        self.disp_count = array("B", bytes(HOURS_PER_DAY))
        self.level = 1.0 if multiplicative else 0.0
        self.learned = 0  # minutes learned, saturating

    # -- reading ---------------------------------------------------------------------------
    def _cell(self, hour: int) -> float | None:
        i = hour % HOURS_PER_WEEK
        if self.count[i]:
            return self.loc[i]
        for back in range(HOURS_PER_DAY, HOURS_PER_WEEK, HOURS_PER_DAY):  # the same hour of an earlier day
            j = (i - back) % HOURS_PER_WEEK
            if self.count[j]:
                return self.loc[j]
        return None

    def expected(self, minute: int) -> float | None:
        """Expected value (transformed space) of an epoch minute, None before anything was learned."""
        hour = minute // 60 + MONDAY
        pos = (minute % 60 + 0.5) / 60  # centre of the minute within its hour, in (0, 1)
        if pos < 0.5:
            a, w = hour - 1, pos + 0.5  # between the previous hour's centre and this one's
        else:
            a, w = hour, pos - 0.5
        va, vb = self._cell(a), self._cell(a + 1)
        if va is None:
            if vb is None:
                return None
            seasonal = vb
        else:
            seasonal = va if vb is None else va + (vb - va) * w
        return seasonal * self.level if self.multiplicative else seasonal + self.level

    def dispersion(self, minute: int) -> float:
        """The series' robust σ at this hour of day, in units of the metric's sampling noise."""
        return self.disp[(minute // 60) % HOURS_PER_DAY]

    # -- learning --------------------------------------------------------------------------
    def learn(self, minute: int, y: float, expected: float | None, sigma_y: float, rate: float) -> None:
        """Fold one minute's value (metric scale) in; `expected` is what `expected(minute)` gave,
        `sigma_y` the robust σ, `rate` the share of the usual learning rate (less while anomalous)."""
        i = (minute // 60 + MONDAY) % HOURS_PER_WEEK
        n = self.count[i]
        mult = self.multiplicative
        if expected is None:  # the series' very first minutes: nothing to compare with yet
            self.loc[i] = y / self.level if mult else y - self.level
            self.count[i] = 1
        else:
            if n == 0:  # first visit of this hour of the week: start from what stood in for it,
                stand_in = self._cell(i)  # worth STAND_IN minutes, so one odd minute cannot set the cell
                if stand_in is None:
                    stand_in = expected / self.level if mult else expected - self.level
                self.loc[i], n = stand_in, STAND_IN
            c = CLIP * sigma_y
            e = y - expected
            step = ALPHA * rate * (c if e > c else -c if e < -c else e)
            if mult:  # the same step, relative to the profile's value now
                self.level = min(LEVEL_MAX, max(1 / LEVEL_MAX, self.level + step * self.level / max(expected, 1e-3)))
                e, c = y / self.level - self.loc[i], c / self.level
            else:
                self.level += step
                e = y - self.level - self.loc[i]  # what is left for this hour's cell
            gamma = max(GAMMA_MIN, 1.0 / (n + 1))
            self.loc[i] += gamma * rate * (c if e > c else -c if e < -c else e)
            if rate > 0:  # an anomalous minute does not make the cell known
                self.count[i] = min(n + 1, _MAX_COUNT)
        if self.learned < 0xFFFFFFFF:
            self.learned += 1

    def learn_dispersion(self, minute: int, standardised: float, rate: float) -> None:
        """Fold in (observed - expected) / sampling noise, at `rate` of the usual rate as `learn`.

        The prior of 1 weighs DISP_PRIOR minutes and updates are clipped at DISP_CLIP dispersions,
        so neither one odd minute nor an anomaly sets the scale; and since a lasting episode is
        learned from after its hold like any shift, a series that became noisier is adopted too
        (the scale can never get stuck too small to learn from again)."""
        i = (minute // 60) % HOURS_PER_DAY
        n = self.disp_count[i]
        d = self.disp[i]
        target = min(abs(standardised), DISP_CLIP * d) * _K_CLIPPED
        self.disp[i] = max(1e-6, d + rate * max(BETA_MIN, 1.0 / (n + 1 + DISP_PRIOR)) * (target - d))
        if rate > 0 and n < _MAX_COUNT:
            self.disp_count[i] = n + 1

    # -- state -----------------------------------------------------------------------------
    @staticmethod
    def size() -> int:
        return _HEAD.size + 5 * HOURS_PER_WEEK + 5 * HOURS_PER_DAY

    def to_bytes(self) -> bytes:
        return b"".join((_HEAD.pack(self.level, self.learned), self.loc.tobytes(), self.count.tobytes(),
                         self.disp.tobytes(), self.disp_count.tobytes()))

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, multiplicative: bool = False) -> Baseline:
        if len(data) != cls.size():
            raise ValueError(f"baseline state is {len(data)} bytes, expected {cls.size()}")
        b = cls(multiplicative)
        b.level, b.learned = _HEAD.unpack_from(data)
        at = _HEAD.size
        for name, width, cells in (("loc", 4, HOURS_PER_WEEK), ("count", 1, HOURS_PER_WEEK),
                                   ("disp", 4, HOURS_PER_DAY), ("disp_count", 1, HOURS_PER_DAY)):
            arr = getattr(b, name)
            arr[:] = array(arr.typecode, bytes(data[at:at + width * cells]))
            at += width * cells
        return b
