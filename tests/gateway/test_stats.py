"""Gateway statistics: per-API counters on the hot path, flushed into gateway_stats, read back as
availability and latency percentiles (the status page), and exposed to Prometheus."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from marketplace.core.db import make_sessionmaker
from marketplace.gateway.models import GatewayStat
from marketplace.gateway.service import api_daily, api_status, percentile
from marketplace.gateway.stats import BUCKETS_MS, N_BUCKETS, GatewayStats
from tests.gateway.factories import Upstream, consumer_with_key, db, make_api
from tests.helpers import Api, assert_problem


def gw(world, path: str) -> str:  # type: ignore[no-untyped-def]
    return f"/gateway/{world.slug}{path}"


def since() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


async def test_calls_upstream_errors_and_refusals_are_counted_per_api(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    h = {"X-API-Key": key["key"]}
    for i in range(3):
        assert (await api.client.get(gw(world, f"/forecast/{i}"), headers=h)).status_code == 200
    assert (await api.client.get(gw(world, "/fail"), headers=h)).status_code == 503  # upstream 5xx
    assert_problem(await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": "mk_wrong-key"}), 401)
    assert_problem(await api.client.get(gw(world, "/nope"), headers=h), 404)

    stats = app.state.gateway.stats
    await stats.flush(db())
    async with db()() as session:
        status = await api_status(session, world.api_id, since())
    # Refusals (401, 404) are not calls: they are the caller's business, counted as refusals.
    assert (status.calls, status.errors, status.availability) == (4, 1, 0.75)
    assert status.p50_ms is not None and 0 < status.p50_ms <= BUCKETS_MS[-1]
    assert status.p95_ms is not None and status.p95_ms >= status.p50_ms

    # A second flush adds to the same minute's row (upsert), element-wise for the buckets.
    assert (await api.client.get(gw(world, "/forecast/again"), headers=h)).status_code == 200
    await stats.flush(db())
    async with db()() as session:
        rows = (await session.scalars(select(GatewayStat).where(GatewayStat.api_id == world.api_id))).all()
        status = await api_status(session, world.api_id, since())
    assert status.calls == 5 and status.errors == 1
    assert sum(r.calls for r in rows) == 5 and sum(sum(r.latency_buckets) for r in rows) == 5
    assert all(len(r.latency_buckets) == N_BUCKETS for r in rows)
    assert sum(r.upstream_errors for r in rows) == 1 and sum(r.gateway_errors for r in rows) == 0


async def test_gateway_errors_count_against_availability(app, api: Api, upstream: Upstream) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    down = await make_api(app, api, f"http://127.0.0.1:{dead_port}")
    _, _, key = await consumer_with_key(app, api, down)
    for _ in range(2):
        assert_problem(await api.client.get(gw(down, "/forecast/x"), headers={"X-API-Key": key["key"]}), 502)
    await app.state.gateway.stats.flush(db())
    async with db()() as session:
        status = await api_status(session, down.api_id, since())
        rows = (await session.scalars(select(GatewayStat).where(GatewayStat.api_id == down.api_id))).all()
    assert (status.calls, status.errors, status.availability) == (2, 2, 0.0)
    assert sum(r.gateway_errors for r in rows) == 2 and sum(r.upstream_errors for r in rows) == 0


async def test_an_api_without_calls_has_no_availability(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    async with db()() as session:
        status = await api_status(session, world.api_id, since())
        days = await api_daily(session, world.api_id, 30)
    assert (status.calls, status.availability, status.p50_ms, status.p95_ms) == (0, None, None, None)
    assert days == []


async def test_processes_add_into_the_same_minute_and_daily_sums_by_day(app) -> None:
    """Two gateway processes (two GatewayStats) flushing the same minute: counts add up."""
    api_id = f"api_stats_{time.time_ns()}"
    tick = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC).timestamp()
    a, b = GatewayStats(), GatewayStats()
    a.window_started = b.window_started = tick
    for _ in range(10):
        a.call(api_id, "s", 200, 0.003)  # (2, 5] ms
    b.call(api_id, "s", 502, 0.040, gateway_error=True)  # (25, 50] ms
    b.call(api_id, "s", 500, 7.0)  # +inf
    await a.flush(db(), now=tick + 10)
    await b.flush(db(), now=tick + 10)
    # The next day, one call.
    c = GatewayStats()
    c.window_started = tick + 86400
    c.call(api_id, "s", 200, 0.0005)
    await c.flush(db(), now=tick + 86410)
    async with db()() as session:
        row = await session.get(GatewayStat, (api_id, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)))
        day1 = await api_status(session, api_id, datetime(2026, 3, 1, tzinfo=UTC))
        days = await api_daily(session, api_id, 3, now=datetime(2026, 3, 2, 18, tzinfo=UTC))
    assert row is not None and (row.calls, row.upstream_errors, row.gateway_errors) == (12, 1, 1)
    assert row.latency_buckets == [0, 0, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert day1.calls == 13 and day1.errors == 2
    assert [(d.day.isoformat(), d.calls, d.errors) for d in days] == [("2026-03-01", 12, 2), ("2026-03-02", 1, 0)]
    assert days[1].p50_ms == pytest.approx(0.5)  # one call in (0, 1] ms: the middle of the bucket
    assert days[0].availability == pytest.approx(10 / 12)
    async with db().begin() as session:
        await session.execute(text("DELETE FROM gateway_stats WHERE api_id = :a"), {"a": api_id})


async def test_a_failed_flush_keeps_its_windows_for_the_next_one(app) -> None:
    api_id = f"api_stats_{time.time_ns()}"
    stats = GatewayStats()
    stats.call(api_id, "s", 200, 0.001)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    broken = make_sessionmaker(create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{dead_port}/x",
                                                   poolclass=NullPool))
    with pytest.raises(OSError):
        await stats.flush(broken)
    assert len(stats.pending) == 1
    stats.call(api_id, "s", 200, 0.001)
    assert await stats.flush(db()) >= 1 and stats.pending == []
    async with db()() as session:
        status = await api_status(session, api_id, since())
    assert status.calls == 2
    async with db().begin() as session:
        await session.execute(text("DELETE FROM gateway_stats WHERE api_id = :a"), {"a": api_id})


def test_percentiles_interpolate_inside_the_bucket_up_to_its_upper_bound() -> None:
    buckets = [0] * N_BUCKETS
    assert percentile(buckets, 0.5) is None
    buckets[2] = 10  # ten calls in (2, 5] ms
    assert percentile(buckets, 0.5) == pytest.approx(3.5)
    assert percentile(buckets, 1.0) == pytest.approx(5.0)  # never above the bucket's upper bound
    buckets[4] = 10  # ten more in (10, 25] ms
    assert percentile(buckets, 0.5) == pytest.approx(5.0)
    assert percentile(buckets, 0.95) == pytest.approx(10 + 15 * 9 / 10)
    buckets[-1] = 100  # most calls slower than the last bound: reported as that bound
    assert percentile(buckets, 0.95) == BUCKETS_MS[-1]


async def test_prometheus_exposes_requests_latency_and_refusals(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[{"name": "Tiny", "rate_per_second": 1,
                                                            "rate_per_minute": 100, "quota_limit": 1000}])
    _, _, key = await consumer_with_key(app, api, world)
    h = {"X-API-Key": key["key"]}
    codes = [(await api.client.get(gw(world, "/forecast/x"), headers=h)).status_code for _ in range(3)]
    assert codes.count(200) >= 1 and codes.count(429) >= 1
    assert_problem(await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": "mk_wrong-key"}), 401)
    text_ = generate_latest(REGISTRY).decode()
    slug = world.slug
    ok = codes.count(200)
    assert f'marketplace_gateway_requests_total{{api="{slug}",status_class="2xx"}} {float(ok)}' in text_
    assert f'marketplace_gateway_requests_total{{api="{slug}",status_class="4xx"}} {float(4 - ok)}' in text_
    assert f'marketplace_gateway_latency_seconds_count{{api="{slug}"}} {float(ok)}' in text_
    assert f'marketplace_gateway_latency_seconds_bucket{{api="{slug}",le="+Inf"}} {float(ok)}' in text_
    assert 'marketplace_gateway_refusals_total{reason="rate_limit"}' in text_
    assert 'marketplace_gateway_refusals_total{reason="auth"}' in text_
    # Flushing moves the window into the totals: the numbers stay.
    await app.state.gateway.stats.flush(db())
    assert f'marketplace_gateway_latency_seconds_count{{api="{slug}"}} {float(ok)}' in generate_latest(
        REGISTRY).decode()
