"""The analytics API over the real chDB store: numbers vs hand sums, levels, filters, isolation, cache."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_DOWN, Decimal

import httpx
import pytest
import redis.asyncio as aioredis

from llmscope.auth import KeyResolver, create_key
from llmscope.errors import NotFound
from llmscope.settings import Settings, load_settings
from llmscope.storage import Store, StoreError
from query.app import create_query_app
from query.cache import LocalCache, NullCache, RedisCache, ResultCache, make_cache
from query.analytics import plan, question, segments
from schemas.rollup import RELATIVE_ERROR, histogram_of, quantile_from_histogram, read_watermarks
from schemas.span import Span
from schemas.times import floor_day
from streams.compaction import compact
from tests.schemas.test_rollup import exact_quantile, make_span
from tests.streams.test_compaction import store_spans
from tests.waiting import eventually

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
D0 = floor_day(NOW) - timedelta(days=2)  # two closed days, then today
URL = "/api/v1/metrics"
FIELDS = {"service": "service_name", "provider": "provider", "model": "model", "status": "status_code",
          "user_id": "user_id", "session_id": "session_id", "prompt_name": "prompt_name", "operation": "operation"}
MODELS = {"gpt-4o": "openai", "claude-3-5-sonnet": "anthropic"}
NO_COST_HOUR = D0 + timedelta(hours=5)


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 10**9


def _spans_a(rng: random.Random) -> list[Span]:
    spans = []
    times = [D0 + timedelta(minutes=rng.randrange(0, 2 * 24 * 60)) for _ in range(500)]
    times += [NOW - timedelta(minutes=rng.randrange(1, 100)) for _ in range(80)]  # still in minute rollups
    times += [NO_COST_HOUR + timedelta(minutes=rng.randrange(60)) for _ in range(5)]
    for i, t in enumerate(times):
        model = rng.choice(list(MODELS))
        start = _ns(t) + rng.randrange(60 * 10**9)
        no_cost = NO_COST_HOUR <= t < NO_COST_HOUR + timedelta(hours=1)
        spans.append(make_span(
            "metrics-a", i, start, int(rng.lognormvariate(20.5, 1.2)),
            service_name=rng.choice(["chat-api", "batch"]), provider=MODELS[model], request_model=model,
            operation="embeddings" if i % 5 == 0 else "chat",
            status_code=rng.choice(["ok", "ok", "ok", "error", "unset"]), input_tokens=rng.randrange(10, 4000),
            output_tokens=rng.randrange(1, 800), cost_usd=None if no_cost or rng.random() < 0.1
            else Decimal(rng.randrange(10**13)) / Decimal(10**17),
            user_id=f"u{rng.randrange(4)}", session_id=f"s{rng.randrange(3)}", prompt_name=rng.choice(["", "summarise"]),
        ))
    return spans


def _spans_b() -> list[Span]:
    return [make_span("metrics-b", i, _ns(D0 + timedelta(hours=3, minutes=i)), 5 * 10**9, request_model="mistral-large",
                      provider="mistral", input_tokens=1_000_000, output_tokens=7, cost_usd=Decimal("1.5"))
            for i in range(7)]


@pytest.fixture(scope="module")
def seeded(store: Store) -> dict[str, list[Span]]:
    """Spans and their minute rollups as the worker stores them (with redeliveries), then compaction."""
    data = {"a": _spans_a(random.Random(11)), "b": _spans_b()}
    messages = [data["a"][i:i + 25] for i in range(0, len(data["a"]), 25)] + [data["b"]]
    for spans in messages + [messages[3], messages[4], messages[5]]:  # 3-5 delivered twice
        store_spans(store, spans)
    compact(store, datetime.now(timezone.utc), timedelta(hours=2))
    return data


@pytest.fixture(scope="module")
def keys(store: Store) -> dict[str, dict[str, str]]:
    return {t: {"authorization": f"Bearer {create_key(store, f'metrics-{t}', 'reader', {'read'})}"} for t in "ab"}


@pytest.fixture(scope="module")
async def app(settings: Settings, store: Store):  # type: ignore[no-untyped-def]
    return create_query_app(settings, store, KeyResolver(store, 30.0))


@pytest.fixture(scope="module")
async def api(app, seeded) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query") as client:
        yield client


def _pick(spans: list[Span], lo: datetime, hi: datetime, **filters: str) -> list[Span]:
    lo_ns, hi_ns = _ns(lo), _ns(hi)
    return [s for s in spans if lo_ns <= s.start_time_ns < hi_ns
            and all(getattr(s, FIELDS[k]) == v for k, v in filters.items())]


def _cost(spans: list[Span]) -> Decimal:
    return sum((s.cost_usd.quantize(Decimal("1e-12"), ROUND_DOWN) for s in spans if s.cost_usd is not None), Decimal(0))


def _check_summary(data: dict, spans: list[Span]) -> None:
    assert data["requests"] == len(spans)
    assert data["errors"] == sum(s.status_code == "error" for s in spans)
    assert data["input_tokens"] == sum(s.input_tokens for s in spans)
    assert data["output_tokens"] == sum(s.output_tokens for s in spans)
    assert data["cost_known_requests"] == sum(s.cost_usd is not None for s in spans)
    assert Decimal(str(data["cost_usd"] or 0)).quantize(Decimal("0.01")) == _cost(spans).quantize(Decimal("0.01"))
    assert data["cost_usd"] == pytest.approx(float(_cost(spans)), rel=1e-12, abs=1e-12)
    assert data["latency_relative_error"] == RELATIVE_ERROR
    ms = [s.duration_ns / 1e6 for s in spans]
    for q, field in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
        if not spans:
            assert data[field] is None
            continue
        assert data[field] == pytest.approx(quantile_from_histogram(histogram_of(ms), q), rel=1e-9)
        assert abs(data[field] - exact_quantile(ms, q)) <= RELATIVE_ERROR * exact_quantile(ms, q) * 1.000001


async def _get(api: httpx.AsyncClient, path: str, headers: dict, **params: object) -> dict:
    r = await api.get(URL + path, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_summary_over_all_levels_equals_hand_sums(api, store, seeded, keys) -> None:
    lo, hi = D0 - timedelta(hours=1), NOW + timedelta(minutes=1)
    data = await _get(api, "/summary", keys["a"], start=int(lo.timestamp()), end=int(hi.timestamp()))
    assert data["source"] == "rollups"
    _check_summary(data, _pick(seeded["a"], lo, hi))
    # The range really was answered from all three levels.
    marks = {level: covered for level, (covered, _) in read_watermarks(store).items()}
    levels = [("rollup_day", "day", 86400, marks["day"]), ("rollup_hour", "hour", 3600, marks["hour"]),
              ("rollup_minute", "minute", 60, hi)]
    assert {s[0] for s in segments(lo, hi, levels)} == {"rollup_day", "rollup_hour", "rollup_minute"}


async def test_random_ranges_are_never_double_counted(api, seeded, keys) -> None:
    rng = random.Random(99)
    lo_min, hi_min = int((D0 - timedelta(hours=2)).timestamp()) // 60, int(NOW.timestamp()) // 60 + 1
    for _ in range(25):
        a, b = sorted(rng.sample(range(lo_min, hi_min), 2))
        lo, hi = datetime.fromtimestamp(a * 60, timezone.utc), datetime.fromtimestamp(b * 60, timezone.utc)
        data = await _get(api, "/summary", keys["a"], start=lo.isoformat(), end=hi.isoformat())
        _check_summary(data, _pick(seeded["a"], lo, hi))


def test_segments_are_disjoint_and_use_the_coarsest_level() -> None:
    t = lambda d, h, m=0: datetime(2025, 1, d, h, m, tzinfo=timezone.utc)  # noqa: E731
    levels = [("rollup_day", "day", 86400, t(4, 0)), ("rollup_hour", "hour", 3600, t(5, 12)),
              ("rollup_minute", "minute", 60, t(5, 13, 12))]
    got = [(table, lo, hi) for table, _, lo, hi in segments(t(1, 10, 7), t(5, 13, 12), levels)]
    assert got == [("rollup_minute", t(1, 10, 7), t(1, 11)), ("rollup_hour", t(1, 11), t(2, 0)),
                   ("rollup_day", t(2, 0), t(4, 0)), ("rollup_hour", t(4, 0), t(5, 12)),
                   ("rollup_minute", t(5, 12), t(5, 13, 12))]
    # Nothing compacted yet: all minutes.
    empty = [(lv[0], lv[1], lv[2], datetime(1970, 1, 1, tzinfo=timezone.utc)) for lv in levels[:2]] + [levels[2]]
    assert [s[0] for s in segments(t(1, 10, 7), t(5, 13, 12), empty)] == ["rollup_minute"]


def test_the_last_day_is_read_from_the_minutes_alone() -> None:
    t = lambda d, h, m=0: datetime(2025, 1, d, h, m, tzinfo=timezone.utc)  # noqa: E731
    marks = {"day": t(5, 0), "hour": t(5, 12)}  # compacted up to these
    now = t(5, 13, 12)

    def tables(start: datetime, end: datetime, interval: int | None = None) -> set[str]:
        sql, _, _ = plan(question("a", start, end, {}, interval, None), marks, now, "db")
        return set(re.findall(r"db\.(rollup_\w+)", sql))

    # The last 24 h, not aligned to minutes: one subquery, not a minute, an hour and a minute segment.
    assert tables(now - timedelta(days=1, seconds=30), now) == {"rollup_minute"}
    assert tables(t(4, 14), t(5, 13), interval=3600) == {"rollup_minute"}
    # Longer ranges still use the coarser levels where they are complete.
    assert tables(t(3, 10, 7), t(5, 10, 7)) == {"rollup_minute", "rollup_hour", "rollup_day"}
    # An older day: its minutes may have outlived their retention, while the hours still hold it.
    assert tables(t(3, 10, 7), t(4, 10, 7)) == {"rollup_minute", "rollup_hour"}


@pytest.mark.parametrize("filters", [
    {"model": "gpt-4o"}, {"provider": "anthropic"}, {"service": "batch"}, {"status": "error"},
    {"prompt_name": "summarise"}, {"user_id": "u1"}, {"session_id": "s2"}, {"model": "gpt-4o", "status": "ok", "user_id": "u3"},
    {"operation": "embeddings"}, {"operation": "chat", "session_id": "s1"},
])
async def test_filters(api, seeded, keys, filters) -> None:
    lo, hi = D0, NOW + timedelta(minutes=1)
    data = await _get(api, "/summary", keys["a"], start=lo.isoformat(), end=hi.isoformat(), **filters)
    assert data["source"] == ("spans" if {"user_id", "session_id"} & filters.keys() else "rollups")
    _check_summary(data, _pick(seeded["a"], lo, hi, **filters))


async def test_tenant_isolation(api, seeded, keys) -> None:
    lo, hi = D0 - timedelta(days=1), NOW + timedelta(minutes=1)
    b = await _get(api, "/summary", keys["b"], start=lo.isoformat(), end=hi.isoformat())
    _check_summary(b, seeded["b"])
    assert b["input_tokens"] == 7_000_000 and b["cost_usd"] == 10.5
    a = await _get(api, "/summary", keys["a"], start=lo.isoformat(), end=hi.isoformat(), model="mistral-large")
    assert a["requests"] == 0 and a["cost_usd"] == 0 and a["latency_p95_ms"] is None
    bd = await _get(api, "/breakdown", keys["b"], start=lo.isoformat(), end=hi.isoformat(), dimension="user")
    assert [i["key"] for i in bd["items"]] == [""]  # b has no users; a's users never show


async def test_timeseries_hourly_with_zero_filled_gaps(api, seeded, keys) -> None:
    lo, hi = D0 - timedelta(hours=3), D0 + timedelta(days=1)
    data = await _get(api, "/timeseries", keys["a"], start=lo.isoformat(), end=hi.isoformat(), interval="1h",
                      metric=["requests", "errors", "error_rate", "input_tokens", "cost_usd", "latency_p95"])
    assert data["interval_seconds"] == 3600 and len(data["timestamps"]) == 27
    assert [datetime.fromisoformat(t) for t in data["timestamps"]] == [lo + timedelta(hours=i) for i in range(27)]
    (series,) = data["series"]
    assert series["group"] is None
    for i, t in enumerate(data["timestamps"]):
        start = lo + timedelta(hours=i)
        spans = _pick(seeded["a"], start, start + timedelta(hours=1))
        assert series["values"]["requests"][i] == len(spans)
        assert series["values"]["input_tokens"][i] == sum(s.input_tokens for s in spans)
        errors = sum(s.status_code == "error" for s in spans)
        assert series["values"]["errors"][i] == errors
        assert series["values"]["error_rate"][i] == pytest.approx(errors / len(spans) if spans else 0.0)
        cost = series["values"]["cost_usd"][i]
        if not spans:  # a gap: zeros, and no latency to report
            assert cost == 0 and series["values"]["latency_p95"][i] is None
        elif start == NO_COST_HOUR:
            assert cost is None  # requests without any known cost are not "free"
        else:
            assert cost == pytest.approx(float(_cost(spans)), rel=1e-12, abs=1e-12)
            p95 = quantile_from_histogram(histogram_of([s.duration_ns / 1e6 for s in spans]), 0.95)
            assert series["values"]["latency_p95"][i] == pytest.approx(p95, rel=1e-9)
    assert series["values"]["requests"][:3] == [0, 0, 0]


async def test_timeseries_group_by_and_daily_interval(api, seeded, keys) -> None:
    lo, hi = D0, D0 + timedelta(days=2)
    data = await _get(api, "/timeseries", keys["a"], start=lo.isoformat(), end=hi.isoformat(), interval="1d",
                      group_by="model", metric="output_tokens")
    assert [s["group"] for s in data["series"]] == sorted(
        MODELS, key=lambda m: -len(_pick(seeded["a"], lo, hi, model=m)))
    for s in data["series"]:
        for i in range(2):
            day = lo + timedelta(days=i)
            spans = _pick(seeded["a"], day, day + timedelta(days=1), model=s["group"])
            assert s["values"]["output_tokens"][i] == sum(x.output_tokens for x in spans)
    users = await _get(api, "/timeseries", keys["a"], start=lo.isoformat(), end=hi.isoformat(), interval="6h",
                       group_by="user", limit=2)
    assert users["source"] == "spans" and len(users["series"]) == 2
    top = users["series"][0]["group"]
    assert sum(users["series"][0]["values"]["requests"]) == len(_pick(seeded["a"], lo, hi, user_id=top))


async def test_timeseries_chooses_an_interval(api, seeded, keys) -> None:
    day = await _get(api, "/timeseries", keys["a"])
    assert day["interval_seconds"] == 300 and len(day["timestamps"]) <= 300 and day["metrics"] == ["requests"]
    month = await _get(api, "/timeseries", keys["a"], start=(NOW - timedelta(days=30)).isoformat())
    assert month["interval_seconds"] == 3 * 3600 and len(month["timestamps"]) <= 300
    assert sum(month["series"][0]["values"]["requests"]) == len(_pick(seeded["a"], NOW - timedelta(days=30), NOW + timedelta(minutes=2)))


async def test_breakdown_top_n(api, seeded, keys) -> None:
    lo, hi = D0, NOW + timedelta(minutes=1)
    spans = _pick(seeded["a"], lo, hi)
    data = await _get(api, "/breakdown", keys["a"], start=lo.isoformat(), end=hi.isoformat(),
                      dimension="model", metric="cost_usd", limit=1)
    best = max(MODELS, key=lambda m: _cost([s for s in spans if s.model == m]))
    (item,) = data["items"]
    assert item["key"] == best and item["value"] == pytest.approx(float(_cost([s for s in spans if s.model == best])))
    assert item["requests"] == sum(s.model == best for s in spans)
    users = await _get(api, "/breakdown", keys["a"], start=lo.isoformat(), end=hi.isoformat(), dimension="user",
                       metric="requests")
    assert users["source"] == "spans"
    assert {i["key"]: i["requests"] for i in users["items"]} == {
        u: sum(s.user_id == u for s in spans) for u in {s.user_id for s in spans}}
    assert [i["requests"] for i in users["items"]] == sorted((i["requests"] for i in users["items"]), reverse=True)
    p99 = await _get(api, "/breakdown", keys["a"], start=lo.isoformat(), end=hi.isoformat(), dimension="service",
                     metric="latency_p99")
    assert [i["value"] for i in p99["items"]] == sorted((i["value"] for i in p99["items"]), reverse=True)


@pytest.mark.parametrize("path, params, reason", [
    ("/timeseries", {"metric": "tokens"}, "unknown metric"),
    ("/breakdown", {"metric": "p42"}, "unknown metric"),
    ("/summary", {"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "start must be before end"),
    ("/timeseries", {"start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z", "interval": "1m"}, "at most 2000"),
    ("/timeseries", {"group_by": "colour"}, "unknown group_by"),
    ("/breakdown", {"dimension": "colour"}, "unknown dimension"),
    ("/timeseries", {"interval": "90s"}, "whole number of minutes"),
    ("/timeseries", {"interval": "soon"}, "interval must be"),
    ("/summary", {"status": "broken"}, "status"),
    ("/breakdown", {"limit": 0}, "limit"),
])
async def test_bad_parameters_are_400(api, keys, path, params, reason) -> None:
    r = await api.get(URL + path, headers=keys["a"], params=params)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and reason in error["message"] and error["request_id"]


async def test_requires_a_read_key(api) -> None:
    assert (await api.get(URL + "/summary")).status_code == 401


async def test_repeat_is_a_cache_hit(api, app, keys) -> None:
    cache = app.state.cache
    assert isinstance(cache, LocalCache)
    params = {"start": D0.isoformat(), "end": (D0 + timedelta(hours=7)).isoformat(), "model": "gpt-4o"}
    hits = cache.stats.hits
    first = await api.get(URL + "/summary", headers=keys["a"], params=params)
    second = await api.get(URL + "/summary", headers=keys["a"], params=params)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert cache.stats.hits == hits + 1 and first.json() == second.json()
    # The tenant is part of the key: b asking the same question computes b's answer.
    other = await api.get(URL + "/summary", headers=keys["b"], params=params)
    assert other.headers["x-cache"] == "miss" and other.json()["data"]["requests"] == 0


async def test_cache_control_no_cache_bypasses_the_cache(api, app, keys) -> None:
    params = {"start": D0.isoformat(), "end": (D0 + timedelta(hours=5)).isoformat()}
    cached = await api.get(URL + "/summary", headers=keys["a"], params=params)
    hits = app.state.cache.stats.hits
    fresh = await api.get(URL + "/summary", headers={**keys["a"], "cache-control": "no-cache"}, params=params)
    assert fresh.headers["x-cache"] == "bypass" and app.state.cache.stats.hits == hits
    assert fresh.json() == cached.json()


def test_ttl_short_when_the_range_reaches_now_and_cache_selection() -> None:
    cache = LocalCache("p", 300, 5)
    now = datetime.now(timezone.utc)
    assert cache.ttl_for(now + timedelta(minutes=1)) == 5 and cache.ttl_for(now - timedelta(days=1)) == 300
    assert isinstance(make_cache(load_settings()), LocalCache)
    assert isinstance(make_cache(load_settings(query_cache_ttl_seconds=0)), NullCache)
    assert isinstance(make_cache(load_settings(redis_url="redis://127.0.0.1:6379/0")), RedisCache)


async def _with_cache(settings: Settings, store: Store, cache) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    app = create_query_app(settings, store, KeyResolver(store, 30.0))
    app.state.cache = cache
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query")


async def test_redis_cache_hits_and_expires(settings, store, seeded, keys) -> None:
    prefix = f"llmscope-test:{uuid.uuid4().hex}"
    cache = RedisCache("redis://127.0.0.1:6379/0", prefix, 300, 5)
    client = await _with_cache(settings, store, cache)
    redis = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        params = {"start": D0.isoformat(), "end": (D0 + timedelta(days=1)).isoformat()}
        first = await client.get(URL + "/breakdown", headers=keys["a"], params=params)
        second = await client.get(URL + "/breakdown", headers=keys["a"], params=params)
        assert first.status_code == 200 and first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
        assert first.json() == second.json() and cache.stats.hits == 1 and cache.stats.errors == 0
        stored = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        assert len(stored) == 1 and stored[0].decode().startswith(f"{prefix}:metrics-a:")
        assert 290_000 < await redis.pttl(stored[0]) <= 300_000  # a closed range: the long TTL
        recent = await client.get(URL + "/summary", headers=keys["a"])
        assert recent.status_code == 200
        keys_now = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        assert min([await redis.pttl(k) for k in keys_now]) <= 5_000  # a range reaching now: the short TTL
    finally:
        for k in [k async for k in redis.scan_iter(match=f"{prefix}:*")]:
            await redis.delete(k)
        await redis.aclose()
        await cache.close()
        await client.aclose()


async def test_redis_cache_fails_open(settings, store, seeded, keys) -> None:
    cache = RedisCache("redis://127.0.0.1:1/0", f"llmscope-test:{uuid.uuid4().hex}", 300, 5)  # nothing listens
    client = await _with_cache(settings, store, cache)
    try:
        lo, hi = D0, D0 + timedelta(days=1)
        for _ in range(3):
            r = await client.get(URL + "/summary", headers=keys["a"], params={"start": lo.isoformat(), "end": hi.isoformat()})
            assert r.status_code == 200 and r.headers["x-cache"] == "miss"
            _check_summary(r.json()["data"], _pick(seeded["a"], lo, hi))
        assert cache.stats.errors >= 1 and cache.stats.hits == 0
    finally:
        await cache.close()
        await client.aclose()


TTL, AHEAD = 3.0, 0.3  # refresh-ahead tests: entries live 3 s and are recomputed once older than 0.3 s


class _Source:
    """A compute function answering `body` (or raising `fail`), counting its calls; each call waits
    at `gate` while it is clear."""

    def __init__(self, body: bytes = b"new", fail: Exception | None = None) -> None:
        self.body, self.fail, self.calls = body, fail, 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> bytes:
        self.calls += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.body


async def _unused() -> bytes:
    raise AssertionError("computed, but the entry should have been there")


async def _holds(cache: ResultCache, key: str, body: bytes) -> bool:
    return await cache.get_or_compute(key, TTL, _unused) == (body, True)


@pytest.fixture(params=["local", "redis"])
async def refreshing(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ResultCache, str]]:
    """A cache of each backend whose key holds b"old", stored just long enough ago to be refreshed."""
    prefix = f"llmscope-test:{uuid.uuid4().hex}"
    cache: ResultCache = (LocalCache(prefix, 300, 5) if request.param == "local"
                          else RedisCache("redis://127.0.0.1:6379/0", prefix, 300, 5))
    key = cache.key("tenant", "budget_status", {})
    try:
        assert await cache.get_or_compute(key, TTL, _Source(b"old"), refresh_after=AHEAD) == (b"old", False)
        await asyncio.sleep(AHEAD + 0.1)
        yield cache, key
    finally:
        await cache.forget(key)
        await cache.close()


async def test_a_stale_hit_is_answered_at_once_and_a_later_read_gets_the_recomputed_value(refreshing) -> None:
    cache, key = refreshing
    source = _Source()
    source.gate.clear()  # the recompute cannot finish: an answer now must be the stored one
    assert await asyncio.wait_for(cache.get_or_compute(key, TTL, source, refresh_after=AHEAD), 1.0) == (b"old", True)
    await eventually(lambda: source.calls == 1, interval=0.02)
    source.gate.set()
    await eventually(lambda: _holds(cache, key, b"new"), interval=0.02)
    assert await cache.get_or_compute(key, TTL, source, refresh_after=AHEAD) == (b"new", True)
    await asyncio.sleep(0.1)
    assert source.calls == 1  # the recomputed value is fresh: no recompute again


async def test_concurrent_stale_hits_start_one_recompute(refreshing) -> None:
    cache, key = refreshing
    source = _Source()
    source.gate.clear()
    reads = [cache.get_or_compute(key, TTL, source, refresh_after=AHEAD) for _ in range(8)]
    assert await asyncio.wait_for(asyncio.gather(*reads), 1.0) == [(b"old", True)] * 8
    assert await cache.get_or_compute(key, TTL, source, refresh_after=AHEAD) == (b"old", True)  # while it runs
    await asyncio.sleep(0.1)  # every task started has reached the gate
    assert source.calls == 1
    source.gate.set()
    await eventually(lambda: _holds(cache, key, b"new"), interval=0.02)
    assert source.calls == 1


@pytest.mark.parametrize("failure", [NotFound("no budget 'bud_x'"), StoreError("store down")], ids=["404", "503"])
async def test_a_failed_recompute_forgets_the_entry_so_the_next_read_computes_and_answers_it(
    refreshing, failure: Exception, caplog: pytest.LogCaptureFixture,
) -> None:
    cache, key = refreshing
    failing = _Source(fail=failure)
    with caplog.at_level(logging.INFO, logger="query.cache"):
        assert await cache.get_or_compute(key, TTL, failing, refresh_after=AHEAD) == (b"old", True)
        await eventually(lambda: "not refreshed" in caplog.text, interval=0.02)
    with pytest.raises(type(failure)):  # no stale answer left: this read computes, and fails as the source does
        await cache.get_or_compute(key, TTL, failing, refresh_after=AHEAD)
    assert failing.calls == 2


async def test_empty_ranges_answer_zeros(api, seeded, keys) -> None:
    lo, hi = D0 - timedelta(days=20), D0 - timedelta(days=19)
    params = {"start": lo.isoformat(), "end": hi.isoformat()}
    ts = await _get(api, "/timeseries", keys["a"], interval="1h", metric=["requests", "latency_p50"], **params)
    assert ts["series"][0]["values"]["requests"] == [0] * 24 and ts["series"][0]["values"]["latency_p50"] == [None] * 24
    grouped = await _get(api, "/timeseries", keys["a"], interval="1h", group_by="model", **params)
    assert grouped["series"] == []
    assert (await _get(api, "/breakdown", keys["a"], **params))["items"] == []
    summary = await _get(api, "/summary", keys["a"], user_id="nobody", **params)
    assert summary["requests"] == 0 and summary["source"] == "spans" and summary["latency_avg_ms"] is None


# --- What a request is: model calls, not the agent spans around them ---------------------------------

AGENT_TENANT = "metrics-agents"
AGENT_T0 = D0 + timedelta(hours=7)


@pytest.fixture(scope="module")
def agent_traces(store: Store) -> dict[str, str]:
    """4 model calls, each under its own agent span (which names the model too, and carries the
    calls' summed usage, as some frameworks do); one agent turn failed. Returns a read key."""
    spans = []
    for i in range(4):
        trace, start = f"{0xA6E + i:032x}", _ns(AGENT_T0 + timedelta(minutes=i))
        spans.append(make_span(AGENT_TENANT, 0, start, 10 * 10**9, trace_id=trace, span_id=f"{0xA0 + i:016x}",
                               name="invoke_agent planner", kind="internal", operation="invoke_agent",
                               status_code="error" if i == 0 else "ok", input_tokens=100, output_tokens=10,
                               cost_usd=Decimal("0.5"), usage_reported=True))
        spans.append(make_span(AGENT_TENANT, 0, start + 10**9, 10**9, trace_id=trace, span_id=f"{0xC0 + i:016x}",
                               parent_span_id=f"{0xA0 + i:016x}", status_code="ok", input_tokens=100,
                               output_tokens=10, cost_usd=Decimal("0.5"), usage_reported=True))
    store_spans(store, spans)
    compact(store, datetime.now(timezone.utc), timedelta(hours=2))
    return {"authorization": f"Bearer {create_key(store, AGENT_TENANT, 'reader', {'read'})}"}


def _agent_range(**params: object) -> dict[str, object]:
    return {"start": int(AGENT_T0.timestamp()), "end": int((AGENT_T0 + timedelta(hours=1)).timestamp()), **params}


@pytest.mark.parametrize("raw", [False, True], ids=["rollups", "spans"])
async def test_four_model_calls_under_four_agent_spans_are_four_requests(api, agent_traces, raw) -> None:
    # A user filter is answered from the spans table, the rest from rollups: both count alike.
    extra = {"user_id": ""} if raw else {}
    data = await _get(api, "/summary", agent_traces, **_agent_range(**extra))
    assert data["source"] == ("spans" if raw else "rollups")
    assert (data["counted"], data["requests"], data["errors"], data["error_rate"]) == ("model_calls", 4, 0, 0.0)
    assert (data["input_tokens"], data["output_tokens"], data["cost_usd"]) == (400, 40, 2.0)
    assert data["latency_p99_ms"] == pytest.approx(1000, rel=RELATIVE_ERROR)
    assert data["latency_avg_ms"] == pytest.approx(1000)


async def test_operation_filter_counts_other_spans_on_purpose(api, agent_traces) -> None:
    agents = await _get(api, "/summary", agent_traces, **_agent_range(operation="invoke_agent"))
    assert (agents["counted"], agents["requests"], agents["errors"]) == ("operation:invoke_agent", 4, 1)
    assert agents["latency_avg_ms"] == pytest.approx(10_000)
    every = await _get(api, "/summary", agent_traces, **_agent_range(operation="*"))
    assert (every["counted"], every["requests"], every["errors"], every["input_tokens"]) == ("all_spans", 8, 1, 800)


async def test_group_by_operation(api, agent_traces) -> None:
    default = await _get(api, "/breakdown", agent_traces, **_agent_range(dimension="operation"))
    assert [(i["key"], i["requests"]) for i in default["items"]] == [("chat", 4)]
    every = await _get(api, "/breakdown", agent_traces, **_agent_range(dimension="operation", operation="*"))
    assert sorted((i["key"], i["requests"], i["errors"]) for i in every["items"]) == [("chat", 4, 0), ("invoke_agent", 4, 1)]
    series = await _get(api, "/timeseries", agent_traces, **_agent_range(group_by="operation", operation="*", interval="1h"))
    assert {s["group"]: s["values"]["requests"] for s in series["series"]} == {"chat": [4.0], "invoke_agent": [4.0]}
    assert series["counted"] == "all_spans"


async def test_traces_list_counts_the_model_calls_as_the_analytics_do(api, agent_traces) -> None:
    r = await api.get("/api/v1/traces", headers=agent_traces, params=_agent_range())
    assert r.status_code == 200, r.text
    traces = r.json()["data"]
    assert len(traces) == 4
    assert {(t["span_count"], t["requests"], t["input_tokens"], t["output_tokens"], t["cost_usd"]) for t in traces} == {
        (2, 1, 100, 10, 0.5)}
    r = await api.get("/api/v1/traces", headers=agent_traces, params=_agent_range(operation="*"))
    assert len(r.json()["data"]) == 4
