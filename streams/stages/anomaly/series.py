"""What the detectors watch: a series key, one point per closed minute, and the five metrics read
from a point, each with its direction, its minimum volume and its sampling-noise model.

Time is in *epoch minutes* (Unix seconds // 60): a minute m covers [60·m, 60·m + 60) seconds UTC.

Silence is data
---------------
Rollups only have rows for minutes that received spans, so "no row" and "zero requests" are the same
thing, and both are what an outage looks like. The caller therefore ticks every series it knows
(e.g. every series with rollup rows in the last 8 days) once per closed minute, passing `None` for a
series that has no row in that minute. A series the caller stops ticking is not watched; a gap in
the minutes it does tick is read as silence (see SeriesDetector.observe).

Closed minutes
--------------
Rollups are keyed by a span's *start* minute, and a span arrives once it has ended and been
exported, so minute m keeps growing after it ends (by the call's duration, the exporter's batch
delay and the pipeline's latency). A minute is judged once, when `now >= end of minute + grace`
(`last_closed_minute`); spans arriving later still land in the rollups but never re-open a
judgement. DEFAULT_GRACE_SECONDS covers typical LLM calls (most end within a minute) plus the
OpenTelemetry exporter's 5 s batch delay and the minute compactor's 1 s interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

DEFAULT_GRACE_SECONDS = 120

UP, DOWN, BOTH = 1, -1, 0  # which departures from the baseline are anomalies


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """(tenant, service, provider, model), or the tenant overall when service, provider and model are None."""

    tenant: str
    service: str | None = None
    provider: str | None = None
    model: str | None = None

    @classmethod
    def overall(cls, tenant: str) -> SeriesKey:
        return cls(tenant)

    @property
    def is_overall(self) -> bool:
        return self.service is None and self.provider is None and self.model is None

    def encode(self) -> str:
        """A stable text form (topic key, episode ids): fields joined by U+001F; '*' marks the overall series."""
        if self.is_overall:
            return f"{self.tenant}\x1f*"
        return "\x1f".join((self.tenant, self.service or "", self.provider or "", self.model or ""))

    @classmethod
    def decode(cls, text: str) -> SeriesKey:
        parts = text.split("\x1f")
        if len(parts) == 2 and parts[1] == "*":
            return cls(parts[0])
        if len(parts) != 4:
            raise ValueError(f"not a series key: {text!r}")
        return cls(parts[0], parts[1], parts[2], parts[3])

    def labels(self) -> dict[str, str | None]:
        return {"tenant": self.tenant, "service": self.service, "provider": self.provider, "model": self.model}


@dataclass(frozen=True, slots=True)
class MinutePoint:
    """One closed minute of one series. `None` in place of a point means no data (zero requests)."""

    requests: int
    errors: int = 0
    cost_usd: float = 0.0
    tokens: int = 0  # input + output tokens of the minute's requests
    latency_p95_ms: float | None = None


EMPTY = MinutePoint(0)


@dataclass(frozen=True, slots=True)
class Metric:
    """How one metric is read from a point and judged.

    Each metric is judged on its variance-stabilising scale `to_scale` (square root for a count,
    arcsine-root for a rate, log for latency, cost and tokens per request), where its minute-to-
    minute noise is close to symmetric and normal, so a score in robust σ means the same rarity for
    every metric and volume; on the raw scale a skewed metric's ordinary tail would read as 4 σ.
    `noise(n)` is the sampling noise on that scale for a minute of n requests (1 for the Anscombe
    count, 1/sqrt(n) for the others); the baseline learns how many of these the series really
    varies by (its dispersion, floored at `min_dispersion`), so the scale follows the volume minute
    by minute. `min_sigma` floors the scale (the latency histogram's 1 % resolution)."""

    name: str
    direction: int  # UP, DOWN or BOTH
    min_requests: int  # below this many requests in the minute the metric is neither judged nor learned
    value: Callable[[MinutePoint], float | None]
    to_scale: Callable[[float], float]
    from_scale: Callable[[float], float]
    noise: Callable[[int], float]
    min_dispersion: float
    min_sigma: float
    total: bool = False  # a per-minute total (cost): its noise follows the *expected* volume, so a
    # collapse of traffic reads as a collapse of cost instead of as a noisier minute
    multiplicative_level: bool = False  # on a scale where a change of level is not additive (square root)


def _error_rate(p: MinutePoint) -> float | None:
    return p.errors / p.requests if p.requests else None


def _tokens_per_request(p: MinutePoint) -> float | None:
    return p.tokens / p.requests if p.requests else None


def _anscombe(x: float) -> float:
    return 2.0 * math.sqrt(max(x, 0.0) + 0.375)


def _anscombe_inv(y: float) -> float:
    return max(0.0, (max(y, 0.0) / 2.0) ** 2 - 0.375)


def _arcsine(p: float) -> float:
    return 2.0 * math.asin(math.sqrt(min(max(p, 0.0), 1.0)))


def _arcsine_inv(y: float) -> float:
    return math.sin(min(max(y, 0.0), math.pi) / 2.0) ** 2


def _log_ms(x: float) -> float:
    return math.log(max(x, 0.0) + 0.001)


def _log_ms_inv(y: float) -> float:
    return max(0.0, math.exp(y) - 0.001)


def _log_micro_usd(x: float) -> float:
    return math.log1p(max(x, 0.0) * 1e6)


def _log_micro_usd_inv(y: float) -> float:
    return max(0.0, math.expm1(y) / 1e6)


def _log1p(x: float) -> float:
    return math.log1p(max(x, 0.0))


def _expm1(y: float) -> float:
    return max(0.0, math.expm1(y))


def _unit(n: int) -> float:
    return 1.0


def _per_request(n: int) -> float:
    return 1.0 / math.sqrt(max(n, 1))


REQUESTS = Metric("requests", BOTH, 0, lambda p: float(p.requests), _anscombe, _anscombe_inv, _unit, 1.0, 0.0,
                  multiplicative_level=True)
ERROR_RATE = Metric("error_rate", UP, 20, _error_rate, _arcsine, _arcsine_inv, _per_request, 1.0, 0.0)
LATENCY_P95 = Metric("latency_p95_ms", UP, 20, lambda p: p.latency_p95_ms, _log_ms, _log_ms_inv, _per_request, 0.05,
                     0.01)
COST = Metric("cost_usd", UP, 1, lambda p: p.cost_usd, _log_micro_usd, _log_micro_usd_inv, _per_request, 0.05, 0.005,
              total=True)
TOKENS_PER_REQUEST = Metric("tokens_per_request", UP, 5, _tokens_per_request, _log1p, _expm1, _per_request, 0.05, 0.005)
METRICS: tuple[Metric, ...] = (REQUESTS, ERROR_RATE, LATENCY_P95, COST, TOKENS_PER_REQUEST)


def epoch_minute(t: datetime | float) -> int:
    """The epoch minute holding a time (aware datetime, or Unix seconds)."""
    seconds = t.timestamp() if isinstance(t, datetime) else t
    return math.floor(seconds / 60)


def last_closed_minute(now_seconds: float, grace_seconds: float = DEFAULT_GRACE_SECONDS) -> int:
    """The latest epoch minute that may be judged at `now_seconds`: it ended at least `grace_seconds` ago."""
    return math.floor((now_seconds - grace_seconds) / 60) - 1


def points_from_rollup_rows(
    rows: Iterable[Mapping[str, Any]], p95: Callable[[Mapping[int, int]], float | None]
) -> dict[int, dict[SeriesKey, MinutePoint]]:
    """Fold rollup_minute rows into points: minute -> series -> point, for every (tenant, service,
    provider, model) and every tenant overall that has rows.

    A row needs tenant_id, minute (aware datetime or epoch seconds), service_name, provider, model,
    requests, errors, input_tokens, output_tokens, cost_usd and latency_hist (bucket -> count);
    rows of the same series and minute (other operations, statuses, prompts) are summed and their
    histograms merged. `p95` reads the 0.95 quantile from a merged histogram: pass the rollup
    contract's `quantile_from_histogram(hist, 0.95)`, so the detector and the query API agree."""
    sums: dict[tuple[int, SeriesKey], list[Any]] = {}
    for row in rows:
        minute = row["minute"]
        m = epoch_minute(minute if isinstance(minute, datetime) else float(minute))
        fine = SeriesKey(str(row["tenant_id"]), str(row["service_name"]), str(row["provider"]), str(row["model"]))
        for key in (fine, SeriesKey.overall(fine.tenant)):
            acc = sums.setdefault((m, key), [0, 0, 0.0, 0, {}])
            acc[0] += int(row["requests"])
            acc[1] += int(row["errors"])
            acc[2] += float(row["cost_usd"] or 0)
            acc[3] += int(row["input_tokens"]) + int(row["output_tokens"])
            hist: dict[int, int] = acc[4]
            for bucket, count in (row["latency_hist"] or {}).items():
                hist[int(bucket)] = hist.get(int(bucket), 0) + int(count)
    out: dict[int, dict[SeriesKey, MinutePoint]] = {}
    for (m, key), (requests, errors, cost, tokens, hist) in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1].encode())):
        out.setdefault(m, {})[key] = MinutePoint(requests, errors, cost, tokens, p95(hist) if hist else None)
    return out
