"""Series keys, closed minutes and rollup rows folded into points."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from streams.stages.anomaly import MinutePoint, SeriesKey, epoch_minute, last_closed_minute, points_from_rollup_rows
from streams.stages.anomaly.series import METRICS
from schemas.rollup import histogram_of, quantile_from_histogram


def test_series_keys_round_trip_through_their_text_form() -> None:
    for key in (SeriesKey("t", "svc", "openai", "gpt-4o"), SeriesKey.overall("t"), SeriesKey("t", "", "", "")):
        assert SeriesKey.decode(key.encode()) == key
    assert SeriesKey.overall("t").is_overall and not SeriesKey("t", "", "", "").is_overall
    with pytest.raises(ValueError):
        SeriesKey.decode("no separators")


def test_a_minute_is_judged_only_once_it_ended_grace_seconds_ago() -> None:
    ten = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
    m = epoch_minute(ten)
    assert m == int(ten.timestamp()) // 60
    # 10:00 ends at 10:01:00; with 120 s of grace it may be judged from 10:03:00 on.
    assert last_closed_minute(ten.timestamp() + 179, 120) == m - 1
    assert last_closed_minute(ten.timestamp() + 180, 120) == m
    assert last_closed_minute(ten.timestamp() + 180, 0) == m + 2


def test_metric_scales_invert() -> None:
    for metric, values in zip(METRICS, ([0, 1, 7, 1500], [0, 0.01, 0.5, 1], [0.5, 120, 9000], [0, 1e-7, 3.5], [0, 12, 800])):
        for v in values:
            assert metric.from_scale(metric.to_scale(v)) == pytest.approx(v, abs=1e-9)


def row(tenant: str, model: str, minute: datetime, requests: int, errors: int, latencies: list[float],
        **kw: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        tenant_id=tenant, minute=minute, service_name="chat", provider="openai", model=model, requests=requests,
        errors=errors, input_tokens=100 * requests, output_tokens=20 * requests, cost_usd=0.001 * requests,
        latency_hist=histogram_of(latencies),
    )
    base.update(kw)
    return base


def test_rollup_rows_fold_into_series_points_and_a_tenant_total() -> None:
    t = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
    rows = [
        row("a", "gpt-4o", t, 3, 1, [100, 200, 300]),
        row("a", "gpt-4o", t, 1, 0, [400], operation="embeddings"),  # another operation: same series
        row("a", "mini", t, 2, 0, [1000, 2000]),
        row("b", "mini", t.timestamp() + 60, 5, 5, [50] * 5),  # epoch seconds work too
    ]
    p95 = lambda hist: quantile_from_histogram(hist, 0.95)  # noqa: E731
    points = points_from_rollup_rows(rows, p95)
    m = epoch_minute(t)
    assert sorted(points) == [m, m + 1]
    gpt = points[m][SeriesKey("a", "chat", "openai", "gpt-4o")]
    assert (gpt.requests, gpt.errors, gpt.tokens) == (4, 1, 480)
    assert gpt.cost_usd == pytest.approx(0.004)
    assert gpt.latency_p95_ms == pytest.approx(quantile_from_histogram(histogram_of([100, 200, 300, 400]), 0.95))
    total = points[m][SeriesKey.overall("a")]
    assert (total.requests, total.errors, total.tokens) == (6, 1, 720)
    assert total.latency_p95_ms == pytest.approx(quantile_from_histogram(histogram_of([100, 200, 300, 400, 1000, 2000]), 0.95))
    assert set(points[m + 1]) == {SeriesKey("b", "chat", "openai", "mini"), SeriesKey.overall("b")}
    assert points[m + 1][SeriesKey.overall("b")] == MinutePoint(5, 5, pytest.approx(0.005), 600, pytest.approx(50, rel=0.01))  # type: ignore[arg-type]


def test_rollup_rows_to_events_the_way_the_worker_drives_it() -> None:
    """The package docstring's loop: rows of each closed minute -> points -> one detector per known
    series (state through bytes, as in a table) -> events; a series without rows is ticked with None."""
    from streams.stages.anomaly import SeriesDetector, state_size

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    table: dict[str, bytes] = {}
    known = {SeriesKey("a", "chat", "openai", "gpt-4o"), SeriesKey.overall("a")}
    events = []
    for i in range(2 * 1440 + 30):
        t = start.timestamp() + 60 * i
        outage = i >= 2 * 1440 + 10
        rows = [] if outage else [row("a", "gpt-4o", t, 40 + i % 7, 0, [800.0] * 3)]
        points = points_from_rollup_rows(rows, lambda h: quantile_from_histogram(h, 0.95)).get(epoch_minute(t), {})
        for key in sorted(known, key=SeriesKey.encode):
            state = table.get(key.encode())
            det = SeriesDetector.from_bytes(key, state) if state else SeriesDetector(key)
            events += det.observe(epoch_minute(t), points.get(key))
            table[key.encode()] = det.to_bytes()
            assert len(table[key.encode()]) == state_size()
    opened = [(e.series, e.metric, e.direction, e.start - epoch_minute(start)) for e in events if e.kind == "opened"]
    assert sorted(opened, key=lambda o: o[0].encode()) == [
        (SeriesKey.overall("a"), "requests", "down", 2 * 1440 + 10),
        (SeriesKey("a", "chat", "openai", "gpt-4o"), "requests", "down", 2 * 1440 + 10),
    ]
