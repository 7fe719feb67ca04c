"""The evaluation's quick run meets the aims, so a regression in the detectors fails the suite
(about 10 s; `python bench/anomaly_eval.py` runs the full evaluation)."""

from __future__ import annotations

from bench.anomaly_eval import evaluate
from bench.anomaly_series import generate


def test_quick_evaluation_meets_the_aims() -> None:
    r = evaluate(series_count=8, history_days=10, test_days=4, seed=7)
    aim = r.aim()
    assert len(aim) >= 80
    assert r.precision >= 0.9
    assert r.recall(aim) >= 0.9
    delays = r.delays(aim)
    assert delays[len(delays) // 2] <= 2
    assert r.clean_false_per_series_week <= 1.0


def test_generator_is_deterministic() -> None:
    (a, start_a), (b, start_b) = generate(2, 2, 1, seed=3), generate(2, 2, 1, seed=3)
    assert start_a == start_b
    assert [(s.points, s.injections) for s in a] == [(s.points, s.injections) for s in b]
    assert generate(2, 2, 1, seed=4)[0][0].points != a[0].points
