"""SeriesDetector end to end on small synthetic series: one episode per anomaly, directions,
minimum volume, silence, replays and state round-trips."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from streams.stages.anomaly import MinutePoint, SeriesDetector, SeriesKey, state_size
from streams.stages.anomaly.detector import CLOSED, OPENED, UPDATED, WARMUP, AnomalyEvent, episode_id

M0 = 28_401_120  # 2024-01-01 00:00 UTC, a Monday
DAY = 1440
KEY = SeriesKey("acme", "chatbot", "openai", "gpt-4o")
Point = MinutePoint | None


def normal_point(rng: random.Random, minute: int, rate: float = 200.0, errors: float = 0.01) -> Point:
    """A calm minute: daily traffic curve, ~1 % errors, p95 around 1.2 s, ~800 tokens per request."""
    lam = rate * (0.6 + 0.4 * math.sin(2 * math.pi * (minute % DAY) / DAY))
    n = max(0, round(rng.gauss(lam, math.sqrt(lam))))
    if n == 0:
        return None
    errs = sum(rng.random() < errors for _ in range(n)) if n < 50 else max(0, round(rng.gauss(n * errors, math.sqrt(n * errors))))
    p95 = 1200 * math.exp(rng.gauss(0, 0.03 + 1 / math.sqrt(n)))
    tokens = round(n * 800 * math.exp(rng.gauss(0, 0.7 / math.sqrt(n))))
    return MinutePoint(n, errs, tokens * 5e-6, tokens, p95)


def trained(days: int = 2, seed: int = 1, **kw: float) -> tuple[SeriesDetector, random.Random, int]:
    """A detector that has seen `days` calm days; returns it, the rng and the next minute."""
    rng = random.Random(seed)
    d = SeriesDetector(KEY)
    for m in range(M0, M0 + days * DAY):
        assert d.observe(m, normal_point(rng, m, **kw)) == []
    return d, rng, M0 + days * DAY


def feed(d: SeriesDetector, rng: random.Random, start: int, minutes: int,
         change: Callable[[int, Point], Point] = lambda i, p: p, **kw: float) -> list[AnomalyEvent]:
    events: list[AnomalyEvent] = []
    for i in range(minutes):
        events += d.observe(start + i, change(i, normal_point(rng, start + i, **kw)))
    return events


def latency_times(factor: float) -> Callable[[int, Point], Point]:
    def change(i: int, p: Point) -> Point:
        assert p is not None and p.latency_p95_ms is not None
        return MinutePoint(p.requests, p.errors, p.cost_usd, p.tokens, p.latency_p95_ms * factor)
    return change


@pytest.fixture(scope="module")
def warm() -> bytes:
    d, _, _ = trained()
    return d.to_bytes()


def restored(warm: bytes, seed: int = 2) -> tuple[SeriesDetector, random.Random, int]:
    return SeriesDetector.from_bytes(KEY, warm), random.Random(seed), M0 + 2 * DAY


def test_calm_days_after_warm_up_raise_nothing(warm: bytes) -> None:
    d, rng, m = restored(warm)
    assert feed(d, rng, m, DAY) == []


def test_sustained_latency_spike_opens_once_and_closes_once(warm: bytes) -> None:
    d, rng, m = restored(warm)
    quiet = feed(d, rng, m, 60)
    events = feed(d, rng, m + 60, 30, latency_times(3.0)) + feed(d, rng, m + 90, 30)
    assert quiet == []
    assert [e.kind for e in events if e.kind != UPDATED] == [OPENED, CLOSED]
    opened, closed = events[0], events[-1]
    assert opened.metric == closed.metric == "latency_p95_ms" and opened.direction == "up"
    assert opened.start == m + 60 and opened.minute == m + 61  # opened on the second bad minute
    assert closed.start == m + 60 and closed.end == m + 90 and closed.minute == m + 94  # 5 calm minutes later
    assert opened.episode_id == closed.episode_id == episode_id(KEY, "latency_p95_ms", 1, m + 60)
    assert closed.peak_score >= opened.peak_score > 10
    assert closed.peak_expected == pytest.approx(1200, rel=0.1)
    assert closed.peak_observed > 2.5 * closed.peak_expected


def test_updates_only_on_a_much_higher_peak(warm: bytes) -> None:
    d, rng, m = restored(warm)
    growing = feed(d, rng, m, 20, lambda i, p: latency_times(1.5 + 0.5 * i)(i, p))
    scores = [e.peak_score for e in growing if e.kind in (OPENED, UPDATED)]
    assert [e.kind for e in growing][0] == OPENED
    assert all(b >= 1.5 * a for a, b in zip(scores, scores[1:]))
    assert len(scores) <= 6


def test_single_bad_minute_opens_nothing(warm: bytes) -> None:
    d, rng, m = restored(warm)
    assert feed(d, rng, m, 30, lambda i, p: latency_times(5.0)(i, p) if i == 10 else p) == []


def test_flapping_series_gives_one_episode_not_a_storm(warm: bytes) -> None:
    d, rng, m = restored(warm)
    # Two bad minutes, two good ones, for two hours: one episode from the first bad minute on.
    events = feed(d, rng, m, 120, lambda i, p: latency_times(3.0)(i, p) if i % 4 < 2 else p) + feed(d, rng, m + 120, 30)
    assert [e.kind for e in events if e.kind != UPDATED] == [OPENED, CLOSED]
    assert events[-1].start == m and events[-1].end == m + 118


def test_latency_drop_is_not_an_anomaly(warm: bytes) -> None:
    d, rng, m = restored(warm)
    assert feed(d, rng, m, 60, latency_times(0.2)) == []


def test_traffic_drop_is_an_anomaly(warm: bytes) -> None:
    d, rng, m = restored(warm)

    def fifth(i: int, p: Point) -> Point:
        return None if p is None else MinutePoint(p.requests // 5, p.errors // 5, p.cost_usd / 5, p.tokens // 5,
                                                  p.latency_p95_ms)
    events = feed(d, rng, m, 30, fifth)
    opened = [e for e in events if e.kind == OPENED]
    assert [(e.metric, e.direction, e.start) for e in opened] == [("requests", "down", m)]
    assert opened[0].minute == m + 1


def test_error_burst_is_judged_only_with_enough_requests() -> None:
    def burst(i: int, p: Point) -> Point:
        return None if p is None else MinutePoint(p.requests, p.requests // 2, p.cost_usd, p.tokens, p.latency_p95_ms)

    busy, rng, m = trained(rate=200)
    assert [(e.metric, e.kind) for e in feed(busy, rng, m, 10, burst, rate=200)][:1] == [("error_rate", OPENED)]
    quiet, rng, m = trained(rate=8)  # 5-11 requests a minute: below error_rate's minimum of 20
    assert [e for e in feed(quiet, rng, m, 10, burst, rate=8) if e.metric == "error_rate"] == []


def test_a_busy_series_that_goes_silent_is_an_outage_at_once(warm: bytes) -> None:
    d, _, m = restored(warm)
    events = [e for i in range(10) for e in d.observe(m + i, None) if e.kind != UPDATED]
    assert [(e.kind, e.metric, e.direction, e.start, e.minute) for e in events] == [
        (OPENED, "requests", "down", m, m + 1)]
    assert events[0].observed == 0 and events[0].expected > 50
    assert d.silent_minutes == 10


def test_a_quiet_series_that_goes_silent_is_an_outage_once_the_silence_is_unlikely() -> None:
    d, rng, m = trained(rate=2)  # 1-2 requests a minute
    events = [e for i in range(60) for e in d.observe(m + i, None) if e.kind != UPDATED]
    assert [(e.kind, e.metric) for e in events] == [(OPENED, "requests")]
    assert 8 <= events[0].minute - m <= 40  # many minutes of nothing, where each minute alone is ordinary


def test_a_gap_between_ticks_is_silence() -> None:
    a, _, m = trained(seed=5)
    b = SeriesDetector.from_bytes(KEY, a.to_bytes())
    ticked = [e for i in range(20) for e in a.observe(m + i, None)] + a.observe(m + 20, MinutePoint(100))
    jumped = b.observe(m + 20, MinutePoint(100))
    assert jumped == ticked and a.to_bytes() == b.to_bytes()


def test_minutes_already_judged_are_ignored(warm: bytes) -> None:
    d, rng, m = restored(warm)
    feed(d, rng, m, 10, latency_times(3.0))
    before = d.to_bytes()
    assert d.observe(m + 5, MinutePoint(1)) == [] and d.observe(m + 9, None) == []
    assert d.to_bytes() == before


def test_nothing_is_judged_before_a_day_of_warm_up() -> None:
    d = SeriesDetector(KEY)
    assert [e for m in range(M0, M0 + WARMUP - 1) for e in d.observe(m, MinutePoint(100 if m % 2 else 1, 50))] == []


def scenario(minute: int, p: Point) -> Point:
    """Calm, with a latency episode, a traffic outage and an error burst on the third day."""
    i = minute - (M0 + 2 * DAY)
    if p is None or i < 0:
        return p
    if 100 <= i < 160:
        return latency_times(4.0)(i, p)
    if 400 <= i < 420:
        return None
    if 700 <= i < 710:
        return MinutePoint(p.requests, p.requests // 3, p.cost_usd, p.tokens, p.latency_p95_ms)
    return p


def run(restore_every: int | None, restore_at: tuple[int, ...] = ()) -> tuple[list[AnomalyEvent], bytes]:
    rng = random.Random(9)
    d = SeriesDetector(KEY)
    events: list[AnomalyEvent] = []
    for m in range(M0, M0 + 3 * DAY):
        i = m - M0
        if (restore_every and i % restore_every == 0) or i in restore_at:
            data = d.to_bytes()
            assert len(data) == state_size()
            d = SeriesDetector.from_bytes(KEY, data)
        events += d.observe(m, scenario(m, normal_point(rng, m)))
    return events, d.to_bytes()


def test_state_round_trips_mid_stream_and_the_continuation_is_identical() -> None:
    straight, final = run(None)
    assert {(e.metric, e.kind) for e in straight} >= {("latency_p95_ms", OPENED), ("requests", CLOSED),
                                                      ("error_rate", CLOSED)}
    # Restored every 97 minutes, and inside each episode (open, and one minute after opening).
    inside = tuple(2 * DAY + k for k in (100, 101, 130, 401, 405, 701))
    resumed, final_resumed = run(97, inside)
    assert resumed == straight
    assert final_resumed == final


def test_a_replay_from_an_older_state_emits_the_same_ids() -> None:
    rng = random.Random(9)
    d = SeriesDetector(KEY)
    points = [(m, scenario(m, normal_point(rng, m))) for m in range(M0, M0 + 3 * DAY)]
    snapshot_at = 2 * DAY + 90
    events: list[AnomalyEvent] = []
    snapshot = b""
    for i, (m, p) in enumerate(points):
        if i == snapshot_at:
            snapshot = d.to_bytes()
        events += d.observe(m, p)
    replayed = SeriesDetector.from_bytes(KEY, snapshot)  # a worker restored from an older changelog entry
    again = [e for m, p in points for e in replayed.observe(m, p)]  # the topic replayed from the start
    assert again == [e for e in events if e.minute >= M0 + snapshot_at]


def test_from_bytes_rejects_other_layouts() -> None:
    data = SeriesDetector(KEY).to_bytes()
    with pytest.raises(ValueError):
        SeriesDetector.from_bytes(KEY, data[:-1])
    with pytest.raises(ValueError):
        SeriesDetector.from_bytes(KEY, bytes([99]) + data[1:])


def test_close_open_ends_every_open_episode(warm: bytes) -> None:
    d, rng, m = restored(warm)
    feed(d, rng, m, 5, latency_times(3.0))
    assert d.open_episodes == 1
    closed = d.close_open(m + 5)
    assert [(e.kind, e.metric, e.end) for e in closed] == [(CLOSED, "latency_p95_ms", m + 5)]
    assert d.open_episodes == 0 and d.close_open(m + 6) == []


def test_event_dict_carries_the_series_labels(warm: bytes) -> None:
    d, rng, m = restored(warm)
    event = feed(d, rng, m, 5, latency_times(3.0))[0]
    row = event.to_dict()
    assert row["tenant"] == "acme" and row["model"] == "gpt-4o" and "series" not in row
    assert row["kind"] == OPENED and row["end"] is None
