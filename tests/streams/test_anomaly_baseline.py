"""The seasonal baseline and the scores, pure, with worked numbers."""

from __future__ import annotations

import math
import random

import pytest

from streams.stages.anomaly.baseline import ALPHA, CLIP, HOURS_PER_WEEK, MONDAY, Baseline
from streams.stages.anomaly.detector import score, silence_score
from streams.stages.anomaly.series import ERROR_RATE, LATENCY_P95, REQUESTS, TOKENS_PER_REQUEST

H = 60  # minutes per hour
M0 = 28_401_120  # 2024-01-01 00:00 UTC, a Monday, in epoch minutes


def cell(minute: int) -> int:
    return (minute // 60 + MONDAY) % HOURS_PER_WEEK


def test_monday_midnight_is_the_first_hour_of_the_week() -> None:
    assert cell(M0) == 0 and cell(M0 + 7 * 24 * H - 1) == HOURS_PER_WEEK - 1


def test_expected_interpolates_between_the_centres_of_the_two_nearest_hours() -> None:
    b = Baseline()
    b.loc[cell(M0 + 10 * H)], b.count[cell(M0 + 10 * H)] = 1.0, 5
    b.loc[cell(M0 + 11 * H)], b.count[cell(M0 + 11 * H)] = 3.0, 5
    b.level = 0.5
    # 10:30 is the 10 o'clock cell's centre; 10:45's centre (10:45:30) is 0.2583 h past it: 1 + 2 × 0.2583.
    assert b.expected(M0 + 10 * H + 30) == pytest.approx(1.0 + 2 * (0.5 / 60) + 0.5)
    assert b.expected(M0 + 10 * H + 45) == pytest.approx(1.0 + 2 * (15.5 / 60) + 0.5)
    assert b.expected(M0 + 11 * H + 29) == pytest.approx(1.0 + 2 * (59.5 / 60) + 0.5)  # just before 11:30
    # Before 10:30 it interpolates with the 9 o'clock cell, which is unknown: the known one stands alone.
    assert b.expected(M0 + 10 * H + 5) == pytest.approx(1.5)


def test_a_new_series_uses_the_same_hour_of_an_earlier_day_until_its_own_is_seen() -> None:
    b = Baseline()
    b.loc[cell(M0 + 10 * H)], b.count[cell(M0 + 10 * H)] = 4.0, 1  # Monday 10:00 seen
    assert b.expected(M0 + 24 * H + 10 * H + 30) == pytest.approx(4.0)  # Tuesday 10:30
    assert b.expected(M0 + 24 * H + 14 * H + 30) is None  # nothing learned for 14:00 on any day


def test_first_minute_of_a_cell_sets_it_then_a_running_mean() -> None:
    b = Baseline()
    m = M0 + 10 * H
    b.learn(m, 10.0, None, 1.0, 1.0)
    assert b.loc[cell(m)] == 10.0 and b.count[cell(m)] == 1
    b.learn(m + 1, 11.0, b.expected(m + 1), 1.0, 1.0)
    # The level takes ALPHA of the 1.0 error first, the cell half of what is left (count 1 -> weight 1/2).
    assert b.level == pytest.approx(ALPHA * 1.0)
    assert b.loc[cell(m)] == pytest.approx(10.0 + 0.5 * (1.0 - ALPHA), rel=1e-6)


def test_an_outlier_moves_the_baseline_by_at_most_the_huber_clip() -> None:
    b = Baseline()
    m = M0 + 10 * H
    b.loc[cell(m)], b.count[cell(m)] = 10.0, 200
    b.learn(m + 30, 1000.0, 10.0, 1.0, 1.0)
    assert b.level == pytest.approx(ALPHA * CLIP)  # 0.0333, not 16.5
    assert b.loc[cell(m)] == pytest.approx(10.0 + (1 / 120) * CLIP, rel=1e-6)


def test_nothing_is_learned_at_rate_zero_except_that_the_minute_was_seen() -> None:
    b = Baseline()
    m = M0 + 10 * H
    b.loc[cell(m)], b.count[cell(m)] = 10.0, 200
    b.learn(m, 50.0, 10.0, 1.0, 0.0)
    assert b.level == 0.0 and b.loc[cell(m)] == 10.0 and b.learned == 1


def test_a_multiplicative_level_carries_from_night_to_day() -> None:
    b = Baseline(multiplicative=True)
    night, day = M0 + 3 * H, M0 + 12 * H
    for m, v in ((night, 10.0), (day, 50.0)):
        b.loc[cell(m)], b.count[cell(m)] = v, 200
    for i in range(600):  # ten hours of nights 10 % above the profile
        b.learn(night + 30, 11.0, b.expected(night + 30), 0.5, 1.0)
    assert b.expected(night + 30) == pytest.approx(11.0, rel=0.01)
    assert b.level > 1.05  # most of it went to the level (the rest to the night's own cell)...
    assert b.expected(day + 30) == pytest.approx(50.0 * b.level)  # ...so the day is that much up in proportion


def test_dispersion_estimates_the_standard_deviation_of_the_standardised_residuals() -> None:
    b = Baseline()
    rng = random.Random(3)
    for i in range(24 * 60 * 8):
        b.learn_dispersion(M0 + i, rng.gauss(0, 2.0), 1.0)
    assert all(d == pytest.approx(2.0, rel=0.1) for d in b.disp)


def test_dispersion_ignores_a_rare_huge_residual() -> None:
    b = Baseline()
    rng = random.Random(4)
    for i in range(24 * 60 * 4):
        b.learn_dispersion(M0 + i, 1e6 if i % 97 == 0 else rng.gauss(0, 1.0), 1.0)
    assert all(d == pytest.approx(1.0, rel=0.15) for d in b.disp)


def test_score_of_requests_on_the_anscombe_scale() -> None:
    # 150 requests where 100 were expected, dispersion 1.5: (2√150.375 - 2√100.375) / 1.5
    z, sigma = score(REQUESTS, 150.0, REQUESTS.to_scale(100.0), 150, 1.5)
    assert sigma == 1.5
    assert z == pytest.approx((24.5255 - 20.0375) / 1.5, abs=1e-3)  # 2.992


def test_score_of_error_rate_on_the_arcsine_scale() -> None:
    # 5 % errors in 400 requests where 1 % is usual: (2 asin √0.05 - 2 asin √0.01) / (1/√400)
    z, sigma = score(ERROR_RATE, 0.05, ERROR_RATE.to_scale(0.01), 400, 1.0)
    assert sigma == pytest.approx(0.05)
    assert z == pytest.approx((0.45103 - 0.20034) / 0.05, abs=1e-2)  # 5.01


def test_score_of_tokens_per_request_on_the_log_scale() -> None:
    # 1100 tokens per request where 1000 are usual, 100 requests, dispersion 1: log(1101/1001) / 0.1
    z, _ = score(TOKENS_PER_REQUEST, 1100.0, TOKENS_PER_REQUEST.to_scale(1000.0), 100, 1.0)
    assert z == pytest.approx(math.log(1101 / 1001) / 0.1)  # 0.952: 10 % more is noise at this volume


def test_latency_scale_never_goes_below_the_histogram_resolution() -> None:
    _, sigma = score(LATENCY_P95, 1000.0, LATENCY_P95.to_scale(1000.0), 1_000_000, 0.0)
    assert sigma == LATENCY_P95.min_sigma == 0.01


def test_silence_score_worked_numbers() -> None:
    # Λ = expected requests over the silent run, discounted by a dispersion of at least 2.
    assert silence_score(1.0, 1.0) == 0.0  # Λ/2 = 0.5: one quiet minute says nothing
    assert silence_score(8.0, 1.0) == pytest.approx(-2.0904, abs=1e-3)  # P = e^-4
    assert silence_score(40.0, 1.0) == pytest.approx(-5.8792, abs=1e-3)  # P = e^-20
    assert silence_score(40.0, 4.0) == pytest.approx(silence_score(20.0, 2.0))
    assert silence_score(1e6, 1.0) == pytest.approx(-math.sqrt(1e6))  # past exp's range: the tail's leading term


def test_one_quiet_first_minute_does_not_collapse_the_dispersion() -> None:
    # A cell that took its first residual at face value could fall to ~0, after which every
    # minute looks anomalous and is never learned from again.
    b = Baseline()
    b.learn_dispersion(M0, 0.0, 1.0)
    assert b.disp[0] == pytest.approx(1 - 1 / 11, rel=1e-6)


def test_dispersion_learns_nothing_at_rate_zero() -> None:
    b = Baseline()
    b.learn_dispersion(M0, 50.0, 0.0)
    assert b.disp[0] == 1.0 and b.disp_count[0] == 0
