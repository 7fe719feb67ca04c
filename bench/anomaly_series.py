"""Labelled synthetic minute series for the anomaly detectors (bench/anomaly_eval.py and its test).

Each series is one (service, provider, model) of an LLM application, a MinutePoint per minute:

* traffic: a night floor plus a business-hours bump (Gaussian, a few hours wide, at a per-series
  peak time), a smaller bump on weekends, slow growth, a slow random wander (a log-normal AR(1)
  multiplier with a correlation time of hours: busier and quieter stretches no calendar predicts),
  and per-minute overdispersed Poisson noise (a log-normal rate multiplier, then Poisson);
* errors: binomial at a constant rate; latency p95: log-normal around a level that rises with
  load and wanders, noisier when few requests make the minute; tokens per request: log-normal
  around a wandering constant, with the noise of an average over the minute's requests; cost:
  tokens × price with a little model-mix noise.

Injections (test window only, one at a time per series, at least GAP minutes apart, and only
where the metric's expected volume is at least twice its minimum: below it no detector may judge
it) each have a kind, the metric it is about, the metrics it moves, a window [start, end) and a
magnitude in robust σ of the clean series. σ is 1.2533 × the mean absolute deviation from the
median of the clean residuals (clean value minus the noise-free, wandering curve) in the two hours
around the start: for normal noise the same as 1.4826 × MAD, but it does not collapse to 0 on a
count that is mostly 0 or 1, as the MAD does at night on a quiet series. It is measured on the
metric's variance-stabilising scale
(Metric.to_scale: square root for requests, arcsine-root for the error rate, log for the others),
the scale on which the clean noise is symmetric: on the raw scale a Poisson(2) count reaches
"+4 σ" every thousand minutes or so, which makes no useful test. The clean value is moved by
magnitude × σ on that scale. A traffic move draws the minute's other metrics anew for the new volume
(a traffic spike costs more too, and its averages are less noisy). A drop to zero empties the minutes; its magnitude is the expected traffic's
distance from zero in σ, so low-volume drops are small by this measure.

Everything comes from `random.Random(seed, series index)`: the same arguments give the same series.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from streams.stages.anomaly.series import METRICS, Metric, MinutePoint

MONDAY = 28_401_120  # 2024-01-01 00:00 UTC (a Monday), in epoch minutes
DAY = 1440
GAP = 240  # minutes between two injections of a series


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    rate: float  # requests per minute at the weekday peak
    night: float  # traffic at night as a fraction of the peak
    weekend: float  # the weekend's business-hours bump as a fraction of the weekday one
    peak: int  # minute of day of the peak (UTC)
    width: int  # the bump's standard deviation in minutes
    overdispersion: float  # CV of the per-minute rate multiplier
    growth: float  # per week
    error_rate: float
    latency_ms: float  # p95 at night
    latency_load: float  # p95 rises by this fraction at full load
    tokens: float  # per request
    price: float  # USD per token
    wander_minutes: float  # correlation time of the slow wander
    traffic_wander: float  # its standard deviation (log scale) for traffic, latency, tokens per request
    latency_wander: float
    tokens_wander: float


@dataclass(frozen=True, slots=True)
class Injection:
    series: int
    kind: str
    metric: str  # the metric it is about: recall and delay are judged on it
    affected: tuple[str, ...]  # episodes on these metrics, in `sign`'s direction, are true detections
    sign: int
    start: int  # epoch minutes, [start, end)
    end: int
    bad_from: int  # first minute the departure is at least 4 σ (or its full size, when smaller)
    magnitude: float  # robust σ of the clean series
    ramp: int = 0  # minutes over which a drift grows to its full size; 0 for a step


@dataclass(slots=True)
class Series:
    profile: Profile
    first: int  # epoch minute of points[0]
    truth: list[Truth]
    points: list[MinutePoint | None]
    clean: list[MinutePoint | None]
    injections: list[Injection] = field(default_factory=list)


def profiles(count: int, rng: random.Random) -> list[Profile]:
    """A mix of volumes: a quarter low (a few requests a minute), the rest medium and high."""
    out = []
    for i in range(count):
        tier = "low" if i % 4 == 3 else ("high" if i % 4 == 0 else "medium")
        rate = {"low": rng.uniform(1.5, 5), "medium": rng.uniform(25, 150), "high": rng.uniform(300, 2000)}[tier]
        out.append(Profile(
            name=f"{tier}-{i}", rate=rate, night=rng.uniform(0.1, 0.4), weekend=rng.uniform(0.3, 0.9),
            peak=rng.randrange(9 * 60, 18 * 60), width=rng.randrange(120, 300), overdispersion=rng.uniform(0.02, 0.1),
            growth=rng.uniform(-0.02, 0.05), error_rate=rng.uniform(0.002, 0.03), latency_ms=rng.uniform(400, 4000),
            latency_load=rng.uniform(0.0, 0.4), tokens=rng.uniform(300, 3000), price=rng.uniform(1e-7, 2e-5),
            wander_minutes=rng.uniform(60, 360), traffic_wander=rng.uniform(0.03, 0.12),
            latency_wander=rng.uniform(0.02, 0.06), tokens_wander=rng.uniform(0.01, 0.04),
        ))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n * p < 20:
        return min(n, _poisson(rng, n * p))
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def load(p: Profile, t: int) -> float:
    """Noise-free requests per minute at epoch minute t."""
    day, tod = divmod(t - MONDAY, DAY)
    d = min(abs(tod - p.peak), DAY - abs(tod - p.peak))
    bump = math.exp(-0.5 * (d / p.width) ** 2) * (p.weekend if day % 7 >= 5 else 1.0)
    return p.rate * (p.night + (1 - p.night) * bump) * (1 + p.growth) ** (day / 7)


Truth = tuple[float, float, float, float]  # noise-free (requests, error rate, latency p95, tokens per request)


def truths(p: Profile, first: int, minutes: int, rng: random.Random) -> list[Truth]:
    """The noise-free curve of every minute: calendar × wander."""
    rho = math.exp(-1 / p.wander_minutes)
    step = math.sqrt(1 - rho * rho)
    w = [rng.gauss(0, 1) for _ in range(3)]
    out = []
    for t in range(first, first + minutes):
        w = [rho * v + step * rng.gauss(0, 1) for v in w]
        lam = load(p, t) * math.exp(p.traffic_wander * w[0])
        lat = p.latency_ms * (1 + p.latency_load * lam / p.rate) * math.exp(p.latency_wander * w[1])
        out.append((lam, p.error_rate, lat, p.tokens * math.exp(p.tokens_wander * w[2])))
    return out


def _clean_point(p: Profile, truth: Truth, rng: random.Random) -> MinutePoint | None:
    mult = math.exp(rng.gauss(0, p.overdispersion) - p.overdispersion**2 / 2)
    return _point(p, truth, _poisson(rng, truth[0] * mult), rng)


def _point(p: Profile, truth: Truth, n: int, rng: random.Random) -> MinutePoint | None:
    """A minute of n requests: errors, latency, tokens and cost drawn for that many requests."""
    if n == 0:
        return None
    _, err, lat, tpr = truth
    errors = _binomial(rng, n, err)
    p95 = lat * math.exp(rng.gauss(0, math.sqrt(0.03**2 + 1.0 / n)))
    tokens = round(n * tpr * math.exp(rng.gauss(0, math.sqrt(0.02**2 + 0.5 / n))))
    cost = tokens * p.price * math.exp(rng.gauss(0, 0.02))
    return MinutePoint(n, errors, cost, tokens, p95)


KINDS = ("spike", "level_shift", "drop_to_zero", "error_burst", "latency_spike", "latency_drift", "token_spike",
         "cost_spike")


def _metric_value(metric: str, pt: MinutePoint | None) -> float | None:
    if pt is None:
        return 0.0 if metric == "requests" else None
    return {
        "requests": float(pt.requests), "error_rate": pt.errors / pt.requests, "latency_p95_ms": pt.latency_p95_ms,
        "tokens_per_request": pt.tokens / pt.requests, "cost_usd": pt.cost_usd,
    }[metric]


def _truth_value(metric: str, s: Series, t: int) -> float:
    lam, err, lat, tpr = s.truth[t - s.first]
    return {"requests": lam, "error_rate": err, "latency_p95_ms": lat, "tokens_per_request": tpr,
            "cost_usd": lam * tpr * s.profile.price}[metric]


_BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def robust_sigma(s: Series, metric: str, t: int) -> float:
    """1.2533 × mean absolute deviation from the median, on the metric's scale, of the clean
    series' residuals from its noise-free curve in [t-60, t+60)."""
    g = _BY_NAME[metric].to_scale
    res = sorted(g(v) - g(_truth_value(metric, s, u)) for u in range(t - 60, t + 60)
                 if (v := _metric_value(metric, s.clean[u - s.first])) is not None)
    if not res:
        return 0.0
    mid = res[len(res) // 2]
    return math.sqrt(math.pi / 2) * sum(abs(r - mid) for r in res) / len(res)


def _moved(metric: str, value: float, delta: float) -> float:
    m = _BY_NAME[metric]
    return m.from_scale(m.to_scale(value) + delta)


def _inject(s: Series, inj: Injection, sigma: float, rng: random.Random) -> None:
    for t in range(inj.start, inj.end):
        i = t - s.first
        pt = s.points[i]
        if inj.kind == "drop_to_zero":
            s.points[i] = None
            continue
        share = min(1.0, (t - inj.start + 1) / inj.ramp) if inj.ramp else 1.0
        delta = inj.sign * inj.magnitude * sigma * share
        if inj.metric == "requests":
            # The other metrics are drawn anew for the new volume (an average over more requests is less noisy).
            s.points[i] = _point(s.profile, s.truth[i], round(_moved("requests", pt.requests if pt else 0, delta)), rng)
            continue
        if pt is None:
            continue
        if inj.metric == "error_rate":
            rate = _moved("error_rate", pt.errors / pt.requests, delta)
            s.points[i] = replace(pt, errors=min(pt.requests, round(rate * pt.requests)))
        elif inj.metric == "latency_p95_ms" and pt.latency_p95_ms is not None:
            s.points[i] = replace(pt, latency_p95_ms=_moved("latency_p95_ms", pt.latency_p95_ms, delta))
        elif inj.metric == "tokens_per_request":
            tokens = round(_moved("tokens_per_request", pt.tokens / pt.requests, delta) * pt.requests)
            s.points[i] = replace(pt, tokens=tokens, cost_usd=pt.cost_usd * tokens / max(pt.tokens, 1))
        elif inj.metric == "cost_usd":
            s.points[i] = replace(pt, cost_usd=_moved("cost_usd", pt.cost_usd, delta))


_AFFECTED = {
    "spike": ("requests", "cost_usd"), "level_shift": ("requests", "cost_usd"), "drop_to_zero": ("requests",),
    "error_burst": ("error_rate",), "latency_spike": ("latency_p95_ms",), "latency_drift": ("latency_p95_ms",),
    "token_spike": ("tokens_per_request", "cost_usd"), "cost_spike": ("cost_usd",),
}


def _plan(s: Series, index: int, test_start: int, test_end: int, rng: random.Random, small: float) -> None:
    """Place injections one after another through the test window."""
    low = s.profile.name.startswith("low")
    t = test_start + rng.randrange(60, GAP)
    while t + 300 < test_end:
        volume = _truth_value("requests", s, t)
        kind = rng.choice([k for k in KINDS if volume >= 2 * _BY_NAME[_AFFECTED[k][0]].min_requests])
        duration = {
            "spike": rng.randrange(3, 11), "level_shift": rng.randrange(30, 181),
            "drop_to_zero": rng.randrange(30, 121) if low else rng.randrange(5, 61),
            "error_burst": rng.randrange(3, 21), "latency_spike": rng.randrange(3, 16),
            "latency_drift": rng.randrange(90, 211), "token_spike": rng.randrange(5, 31),
            "cost_spike": rng.randrange(5, 31),
        }[kind]
        if t + duration + 60 >= test_end:
            return
        metric = _AFFECTED[kind][0]
        sign = -1 if kind == "drop_to_zero" or (kind == "level_shift" and rng.random() < 0.5) else 1
        sigma = robust_sigma(s, metric, t)
        if kind == "drop_to_zero":
            g = _BY_NAME["requests"].to_scale
            magnitude = (g(volume) - g(0)) / sigma if sigma else 0.0
        else:
            magnitude = rng.uniform(2.0, 4.0) if rng.random() < small else rng.uniform(4.0, 8.0)
        bad_from, ramp = t, 0
        if kind == "latency_drift":  # ramps over all but the last 30 minutes, then holds
            ramp = duration - 30
            bad_from = t + math.ceil(min(4.0, magnitude) / magnitude * ramp) - 1
        if sigma > 0:
            inj = Injection(index, kind, metric, _AFFECTED[kind], sign, t, t + duration, bad_from, magnitude, ramp)
            _inject(s, inj, sigma, rng)
            s.injections.append(inj)
        t += duration + GAP + rng.randrange(0, 120)


def generate(count: int, history_days: int, test_days: int, seed: int, small: float = 0.15) -> tuple[list[Series], int]:
    """`count` series of history_days + test_days minutes from MONDAY, injections only in the test
    window; a share `small` of them (in magnitude 2-4 σ, below the aim) are reported apart. Returns
    the series and the test window's first minute."""
    rng = random.Random(seed)
    test_start = MONDAY + history_days * DAY
    end = test_start + test_days * DAY
    out = []
    for i, p in enumerate(profiles(count, rng)):
        r = random.Random(seed * 1_000_003 + i)
        truth = truths(p, MONDAY, end - MONDAY, r)
        clean = [_clean_point(p, tr, r) for tr in truth]
        s = Series(p, MONDAY, truth, list(clean), clean)
        _plan(s, i, test_start, end, r, small)
        out.append(s)
    return out, test_start
