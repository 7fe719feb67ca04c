"""How well the anomaly detectors find labelled anomalies, how often they cry wolf, how fast they run.

Run:  python bench/anomaly_eval.py [--series 20] [--history-days 21] [--test-days 7] [--seed 7] [--quick]
The default runs about a minute on one core (two passes over 20 series × 28 days of minutes);
--quick (8 series, 10 + 4 days) is what tests/streams/test_anomaly_eval.py runs. Throughput is
points through SeriesDetector.observe per CPU second of this process (other load on a shared
machine costs less than in wall-clock time).

Series and injections: bench/anomaly_series.py. The detector sees every minute from the first day
(the history, clean, lets the baselines learn) and is scored on the test window only.

Matching
--------
* An episode is an opened event and its closed event (or the end of the run): [start, end).
* A *true* episode overlaps, on the same series, an injection window [start, end) whose `affected`
  metrics include the episode's metric, in the injection's direction. Every other episode opened in
  the test window is a false positive.
* An injection is *found* when a true episode on its own metric (the one it is about) overlaps it.
  Delay = the minute judged when the episode was opened - the injection's `bad_from` (its start;
  for a drift the minute it reaches 4 σ); in minutes of data, the closing grace comes on top.
* The aim set: injections of at least 4 robust σ lasting at least 3 minutes (all of them last at
  least 3). Precision counts every episode opened in the test window.
* False episodes per series-week: the same series without injections, episodes opened in the test
  window, divided by series × test weeks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.anomaly_series import KINDS, Injection, Series, generate  # noqa: E402
from streams.stages.anomaly import SeriesDetector, SeriesKey  # noqa: E402
from streams.stages.anomaly.detector import CLOSED, OPENED  # noqa: E402

AIM_SIGMA = 4.0


@dataclass(slots=True)
class Episode:
    series: int
    metric: str
    sign: int
    start: int
    opened_at: int
    end: int


@dataclass(slots=True)
class Run:
    episodes: list[Episode]
    points: int
    seconds: float


@dataclass(slots=True)
class Report:
    injections: list[Injection]
    found: dict[int, int]  # index in injections -> delay
    true_episodes: int
    false_episodes: int
    clean_false_episodes: int
    clean_series_weeks: float
    points_per_second: float
    false_by_metric: dict[str, int] = field(default_factory=dict)

    def aim(self) -> list[int]:
        return [i for i, inj in enumerate(self.injections) if inj.magnitude >= AIM_SIGMA and inj.end - inj.start >= 3]

    @property
    def precision(self) -> float:
        total = self.true_episodes + self.false_episodes
        return self.true_episodes / total if total else 1.0

    def recall(self, which: list[int]) -> float:
        return sum(i in self.found for i in which) / len(which) if which else 1.0

    def delays(self, which: list[int]) -> list[int]:
        return sorted(self.found[i] for i in which if i in self.found)

    @property
    def clean_false_per_series_week(self) -> float:
        return self.clean_false_episodes / self.clean_series_weeks


def detect(series: list[Series], clean: bool, test_start: int) -> Run:
    episodes: list[Episode] = []
    points, seconds = 0, 0.0
    for index, s in enumerate(series):
        detector = SeriesDetector(SeriesKey("bench", s.profile.name, "provider", "model"))
        opened: dict[str, Episode] = {}
        data = s.clean if clean else s.points
        started = time.process_time()
        for offset, point in enumerate(data):
            for e in detector.observe(s.first + offset, point):
                if e.kind == OPENED and e.minute >= test_start:
                    opened[e.episode_id] = ep = Episode(index, e.metric, 1 if e.direction == "up" else -1, e.start,
                                                        e.minute, s.first + len(data))
                    episodes.append(ep)
                elif e.kind == CLOSED and e.episode_id in opened and e.end is not None:
                    opened.pop(e.episode_id).end = e.end
        seconds += time.process_time() - started
        points += len(data)
    return Run(episodes, points, seconds)


def _matches(ep: Episode, inj: Injection, own_metric: bool) -> bool:
    metric_ok = ep.metric == inj.metric if own_metric else ep.metric in inj.affected
    return ep.series == inj.series and metric_ok and ep.sign == inj.sign and ep.start < inj.end and inj.start < ep.end


def evaluate(series_count: int, history_days: int, test_days: int, seed: int) -> Report:
    series, test_start = generate(series_count, history_days, test_days, seed)
    injections = [inj for s in series for inj in s.injections]
    dirty, clean = detect(series, False, test_start), detect(series, True, test_start)
    by_series: dict[int, list[Injection]] = defaultdict(list)
    for inj in injections:
        by_series[inj.series].append(inj)
    true_eps = false_eps = 0
    false_by_metric: dict[str, int] = defaultdict(int)
    for ep in dirty.episodes:
        if any(_matches(ep, inj, False) for inj in by_series[ep.series]):
            true_eps += 1
        else:
            false_eps += 1
            false_by_metric[ep.metric] += 1
    found: dict[int, int] = {}
    for i, inj in enumerate(injections):
        hits = [ep for ep in dirty.episodes if _matches(ep, inj, True)]
        if hits:
            found[i] = min(ep.opened_at for ep in hits) - inj.bad_from
    return Report(
        injections, found, true_eps, false_eps, len(clean.episodes), series_count * test_days / 7,
        (dirty.points + clean.points) / (dirty.seconds + clean.seconds), dict(false_by_metric),
    )


def _p95(values: list[int]) -> float:
    return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))] if values else float("nan")


def _median(values: list[int]) -> float:
    return statistics.median(values) if values else float("nan")


def render(r: Report) -> str:
    aim = set(r.aim())
    lines = [f"{'kind':<15}{'n':>5}{'found':>7}{'recall':>8}{'delay p50':>11}{'p95':>6}   small (<4σ) found/n"]
    for kind in (*KINDS, "all"):
        members = [i for i, inj in enumerate(r.injections) if kind in ("all", inj.kind)]
        main = [i for i in members if i in aim]
        small = [i for i in members if i not in aim]
        d = r.delays(main)
        lines.append(f"{kind:<15}{len(main):>5}{sum(i in r.found for i in main):>7}{r.recall(main):>8.3f}"
                     f"{_median(d):>11}{_p95(d):>6}   {sum(i in r.found for i in small)}/{len(small)}")
    recall = r.recall(sorted(aim))
    f1 = 2 * r.precision * recall / (r.precision + recall) if r.precision + recall else 0.0
    lines += [
        "",
        f"episodes in the test window: {r.true_episodes} true, {r.false_episodes} false "
        f"(false by metric: {r.false_by_metric or '-'})",
        f"precision {r.precision:.3f}   recall (aim set) {recall:.3f}   F1 {f1:.3f}",
        f"clean twin: {r.clean_false_episodes} false episodes over {r.clean_series_weeks:.1f} series-weeks = "
        f"{r.clean_false_per_series_week:.2f} per series per week",
        f"throughput: {r.points_per_second:,.0f} points per CPU second (a point = one series-minute, 5 metrics)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--history-days", type=int, default=21)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="8 series, 10 + 4 days (the test's run)")
    args = parser.parse_args()
    if args.quick:
        args.series, args.history_days, args.test_days = 8, 10, 4
    started = time.perf_counter()
    report = evaluate(args.series, args.history_days, args.test_days, args.seed)
    print(f"seed {args.seed}: {args.series} series, {args.history_days} days of history, {args.test_days} test days; "
          f"{len(report.injections)} injections ({len(report.aim())} of >= {AIM_SIGMA:g} σ)")
    print(render(report))
    print(f"ran {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
