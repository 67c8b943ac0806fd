"""The usage ledger: exactly once from the gateway's stream to PostgreSQL, rollups, read side,
partner ingestion, quota alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, select

from marketplace.core.events import Event
from marketplace.core.redis import key as rkey
from marketplace.metering.models import UsageEvent, UsageRollup
from marketplace.metering.pricing import estimate_amount
from marketplace.metering.service import (
    GROUP,
    EndpointUsage,
    ensure_group,
    rebuild_rollups,
    usage_for_period,
    write_batch,
)
from tests.gateway.factories import Upstream, consumer_with_key, db, flush, make_api, redis_client, usage
from tests.helpers import Api, assert_problem


def gw(world, path: str) -> str:  # type: ignore[no-untyped-def]
    return f"/gateway/{world.slug}{path}"


def entry(request_id: str, sub: dict, world, *, kind: str = "u", units: int = 1,  # type: ignore[no-untyped-def]
          ts: datetime | None = None) -> dict[str, str]:
    endpoint = world.endpoints["GET /forecast/{city}"]
    at = ts or datetime.now(UTC)
    return {"t": kind, "r": request_id, "s": sub["id"], "e": endpoint, "c": "usr_x", "p": world.partner_id,
            "a": world.api_id, "k": "", "m": "GET", "pt": "/forecast/{city}", "u": str(units),
            "ts": str(int(at.timestamp() * 1000))}


async def test_a_duplicate_usage_event_is_not_counted_twice(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, _ = await consumer_with_key(app, api, world)
    redis = redis_client()
    try:
        for _ in range(3):  # the same request id enqueued three times (a retried XADD, a replayed batch)
            await redis.xadd(rkey("usage"), entry("req_duplicate_" + sub["id"], sub, world, units=7))
        await flush(app)
        fields = entry("req_duplicate_" + sub["id"], sub, world, units=7)
        await write_batch(redis, db(), [(b"0-1", {k.encode(): v.encode() for k, v in fields.items()})])
    finally:
        await redis.aclose()
    body = await usage(api, user, sub["id"])
    assert body["units"] == 7 and body["calls"] == 1


async def test_a_worker_killed_between_reading_and_writing_a_batch_loses_nothing(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    for i in range(6):
        assert (await api.client.get(gw(world, f"/forecast/{i}"), headers={"X-API-Key": key["key"]})).status_code == 200
    redis = redis_client()
    try:
        await ensure_group(redis)
        # A worker reads the batch, then dies before writing or acknowledging it.
        read = await redis.xreadgroup(GROUP, "worker-that-dies", {rkey("usage"): ">"}, count=10_000)
        assert sum(len(e) for _, e in read) >= 6
        pending = await redis.xpending(rkey("usage"), GROUP)
        assert pending["pending"] >= 6
    finally:
        await redis.aclose()
    await flush(app)  # the entries are still pending on the dead worker: not visible to a fresh read
    assert (await usage(api, user, sub["id"]))["units"] == 0
    await flush(app, min_idle_ms=0)  # reclaimed with XAUTOCLAIM once idle long enough
    assert (await usage(api, user, sub["id"]))["units"] == 6
    redis = redis_client()
    try:
        assert (await redis.xpending(rkey("usage"), GROUP))["pending"] == 0
    finally:
        await redis.aclose()


async def test_a_void_is_exact_in_either_order(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, _ = await consumer_with_key(app, api, world)
    redis = redis_client()

    def raw(fields: dict[str, str]) -> dict[bytes, bytes]:
        return {k.encode(): v.encode() for k, v in fields.items()}

    try:
        # the call is flushed first, then its void: billed, then taken back out
        await write_batch(redis, db(), [(b"0-1", raw(entry("req_a_" + sub["id"], sub, world, units=3)))])
        assert (await usage(api, user, sub["id"]))["units"] == 3
        await write_batch(redis, db(), [(b"0-2", raw(entry("req_a_" + sub["id"], sub, world, kind="v", units=3)))])
        # the void is seen first (a reclaimed batch): the call stays unbilled when it arrives
        await write_batch(redis, db(), [(b"0-3", raw(entry("req_b_" + sub["id"], sub, world, kind="v", units=4)))])
        await write_batch(redis, db(), [(b"0-4", raw(entry("req_b_" + sub["id"], sub, world, units=4)))])
    finally:
        await redis.aclose()
    assert (await usage(api, user, sub["id"]))["units"] == 0
    async with db()() as session:
        rows = (await session.execute(select(UsageEvent.id, UsageEvent.billable)
                                      .where(UsageEvent.subscription_id == sub["id"]))).all()
        rollup = await session.scalar(select(func.coalesce(func.sum(UsageRollup.units), 0))
                                      .where(UsageRollup.subscription_id == sub["id"]))
    assert sorted(rows) == [("req_a_" + sub["id"], False), ("req_b_" + sub["id"], False)]
    assert rollup == 0


async def test_usage_for_period_is_exact_at_any_boundary_and_rollups_rebuild_from_raw_events(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _, sub, _ = await consumer_with_key(app, api, world)
    base = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    times = [base + timedelta(minutes=m) for m in (5, 50, 65, 130, 181, 240)]  # 10:05 … 14:00
    redis = redis_client()
    try:
        batch = [(f"0-{i + 1}".encode(), {k.encode(): v.encode() for k, v in
                                            entry(f"req_t{i}_{sub['id']}", sub, world, units=i + 1, ts=t).items()})
                 for i, t in enumerate(times)]
        await write_batch(redis, db(), batch)
    finally:
        await redis.aclose()

    async def units(start: datetime, end: datetime) -> int:
        async with db()() as session:
            rows = await usage_for_period(session, sub["id"], start, end)
        assert all(isinstance(r, EndpointUsage) for r in rows)
        return sum(r.units for r in rows)

    assert await units(base, base + timedelta(hours=5)) == 21
    assert await units(base + timedelta(minutes=6), base + timedelta(minutes=181)) == 2 + 3 + 4
    assert await units(base + timedelta(minutes=50), base + timedelta(minutes=50, seconds=1)) == 2
    assert await units(base + timedelta(minutes=182), base + timedelta(minutes=240)) == 0
    async with db()() as session:
        before = (await session.execute(select(UsageRollup.hour, UsageRollup.calls, UsageRollup.units)
                                        .where(UsageRollup.subscription_id == sub["id"])
                                        .order_by(UsageRollup.hour))).all()
    async with db().begin() as session:
        await rebuild_rollups(session, sub["id"])
    async with db()() as session:
        after = (await session.execute(select(UsageRollup.hour, UsageRollup.calls, UsageRollup.units)
                                       .where(UsageRollup.subscription_id == sub["id"])
                                       .order_by(UsageRollup.hour))).all()
    assert before == after and len(after) == 5


async def test_usage_shows_quota_included_units_and_an_estimate(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[{"name": "Free", "quota_limit": 100, "included_units": 10}])
    user, sub, key = await consumer_with_key(app, api, world)
    for _ in range(3):
        await api.client.get(gw(world, "/heavy"), headers={"X-API-Key": key["key"]})
    await flush(app)
    body = await usage(api, user, sub["id"])
    assert body["units"] == 15 and body["included_units"] == 10 and body["currency"] == "usd"
    assert body["quota"] == {"limit": 100, "hard": False, "used": 15, "remaining": 85}
    assert body["estimated_amount"] == 0 and body["period_start"] == sub["current_period_start"]
    assert body["by_endpoint"] == [{"method": "GET", "path": "/heavy", "calls": 3, "units": 15,
                                    "endpoint_id": world.endpoints["GET /heavy"]}]


def test_estimate_amount_adds_the_fee_and_prices_units_beyond_the_included_ones() -> None:
    def plan(pricing, fee=4900, included=50000):  # type: ignore[no-untyped-def]
        return SimpleNamespace(monthly_fee=fee, included_units=included, unit_pricing=pricing)

    graduated = {"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"},
                                                 {"up_to": None, "unit_amount": "0.05"}]}
    assert estimate_amount(plan(graduated), 40000) == 4900
    assert estimate_amount(plan(graduated), 150000) == 4900 + 10000  # 100k overage at 0.1
    assert estimate_amount(plan(graduated), 250000) == 4900 + 10000 + 5000  # 100k at 0.1, 100k at 0.05
    volume = {"model": "volume", "tiers": [{"up_to": 1000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]}
    assert estimate_amount(plan(volume, 0, 0), 2000) == 1000
    assert estimate_amount(plan({"model": "per_unit", "unit_amount": "0.333"}, 0, 0), 3) == 1
    assert estimate_amount(plan({"model": "package", "package_size": 1000, "package_amount": "500"}, 0, 0), 1001) == 1000
    assert estimate_amount(plan(None, 0, 0), 10**9) == 0


async def test_partner_sees_usage_by_consumer_and_by_day_and_as_csv(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _, sub1, key1 = await consumer_with_key(app, api, world)
    _, sub2, key2 = await consumer_with_key(app, api, world)
    for _ in range(2):
        await api.client.get(gw(world, "/heavy"), headers={"X-API-Key": key1["key"]})
    await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key2["key"]})
    await flush(app)
    h = world.partner_user.headers
    by_consumer = (await api.client.get(f"/v1/partners/{world.partner_id}/usage?api_id={world.api_id}",
                                        headers=h)).json()
    assert {r["subscription_id"]: r["units"] for r in by_consumer["data"]} == {sub1["id"]: 10, sub2["id"]: 1}
    by_day = (await api.client.get(f"/v1/partners/{world.partner_id}/usage?group_by=day", headers=h)).json()
    assert sum(r["units"] for r in by_day["data"]) == 11 and sum(r["calls"] for r in by_day["data"]) == 3
    csv = await api.client.get(f"/v1/partners/{world.partner_id}/usage?format=csv", headers=h)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "consumer_id,subscription_id,api_id,calls,units" and len(lines) == 3
    assert (await api.client.get(f"/v1/partners/{world.partner_id}/usage.csv?group_by=day", headers=h)).status_code == 200
    stranger = await api.signup()
    assert_problem(await api.client.get(f"/v1/partners/{world.partner_id}/usage", headers=stranger.headers), 404)
    assert_problem(await api.client.get(f"/v1/partners/{world.partner_id}/usage?group_by=nope", headers=h), 400)


async def test_partner_ingestion_reports_duplicates_and_aggregates_each_meter(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, _ = await consumer_with_key(app, api, world)
    h = world.partner_user.headers
    for name, agg in [("tokens", "sum"), ("requests", "count"), ("peak", "max"), ("users", "unique"),
                      ("level", "last")]:
        created = await api.client.post(f"/v1/apis/{world.api_id}/meters", json={"name": name, "aggregation": agg},
                                        headers=h)
        assert created.status_code == 201, created.text
    assert_problem(await api.client.post(f"/v1/apis/{world.api_id}/meters", json={"name": "tokens"}, headers=h), 409)
    t0 = datetime.now(UTC)

    def ev(event_id: str, meter: str, value, offset: int = 0) -> dict:  # type: ignore[no-untyped-def]
        return {"event_id": event_id, "subscription_id": sub["id"], "meter": meter, "value": value,
                "timestamp": (t0 + timedelta(seconds=offset)).isoformat()}

    events = [ev("e1", "tokens", 100), ev("e2", "tokens", 250.5), ev("e3", "requests", 1), ev("e4", "requests", 1),
              ev("e5", "peak", 7), ev("e6", "peak", 3), ev("e7", "users", 42), ev("e8", "users", 42),
              ev("e9", "users", 43), ev("e10", "level", 5, 1), ev("e11", "level", 2, 2), ev("e1", "tokens", 100),
              ev("e12", "nope", 1)]
    first = await api.client.post("/v1/usage-events", json={"events": events}, headers=h)
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["accepted"]) == 11 and body["duplicates"] == ["e1"]
    assert [r["event_id"] for r in body["rejected"]] == ["e12"]
    again = (await api.client.post("/v1/usage-events", json={"events": events[:3]}, headers=h)).json()
    assert again["accepted"] == [] and sorted(again["duplicates"]) == ["e1", "e2", "e3"]
    meters = {m["meter"]: m["value"] for m in (await usage(api, user, sub["id"]))["meters"]}
    assert meters == {"tokens": "350.5", "requests": "2", "peak": "7", "users": "2", "level": "2"}
    stranger = await api.signup()
    foreign = (await api.client.post("/v1/usage-events", json={"events": [ev("x1", "tokens", 1)]},
                                     headers=stranger.headers)).json()
    assert foreign["accepted"] == [] and foreign["rejected"][0]["event_id"] == "x1"
    too_many = await api.client.post("/v1/usage-events", json={"events": [ev(f"b{i}", "tokens", 1)
                                                                          for i in range(1001)]}, headers=h)
    assert too_many.status_code in (400, 422)


async def test_quota_alerts_are_published_once_per_period_at_80_and_100_percent(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[{"name": "Ten", "quota_limit": 10, "quota_hard": False}])
    user, _sub, key = await consumer_with_key(app, api, world)

    async def types() -> list[str]:
        async with db()() as session:
            return list((await session.scalars(select(Event.type).where(
                Event.consumer_id == user.id, Event.type.in_(["usage.threshold_reached", "quota.exceeded"]))
                .order_by(Event.id))).all())

    for i in range(7):
        await api.client.get(gw(world, f"/forecast/{i}"), headers={"X-API-Key": key["key"]})
    await flush(app)
    assert await types() == []
    await api.client.get(gw(world, "/forecast/8"), headers={"X-API-Key": key["key"]})
    await flush(app)
    assert await types() == ["usage.threshold_reached"]
    for i in range(4):
        await api.client.get(gw(world, f"/forecast/x{i}"), headers={"X-API-Key": key["key"]})
        await flush(app)
    assert await types() == ["usage.threshold_reached", "quota.exceeded"]


async def test_the_worker_job_flushes_gateway_usage(app, api: Api, upstream: Upstream) -> None:
    """The same flush, run as the arq job by a real worker (burst mode), as production does."""
    from arq import create_pool

    from marketplace.core.redis import arq_settings, queue_name
    from marketplace.worker import build_worker

    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    for i in range(3):
        assert (await api.client.get(gw(world, f"/forecast/{i}"), headers={"X-API-Key": key["key"]})).status_code == 200
    pool = await create_pool(arq_settings(), default_queue_name=queue_name())
    try:
        assert await pool.enqueue_job("flush_usage") is not None
        worker = build_worker(pool)
        worker.burst = True
        try:
            await worker.main()
        finally:
            await worker.close()
        assert worker.jobs_failed == 0 and worker.jobs_complete >= 1
    finally:
        await pool.aclose()
    assert (await usage(api, user, sub["id"]))["units"] == 3


async def test_partner_usage_events_with_unstorable_values_or_timestamps_are_rejected_one_by_one(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _user, sub, _ = await consumer_with_key(app, api, world)
    h = world.partner_user.headers
    created = await api.client.post(f"/v1/apis/{world.api_id}/meters", json={"name": "tokens"}, headers=h)
    assert created.status_code == 201, created.text

    def ev(event_id: str, value, timestamp: str | None = None) -> dict:  # type: ignore[no-untyped-def]
        return {"event_id": event_id, "subscription_id": sub["id"], "meter": "tokens", "value": value,
                **({"timestamp": timestamp} if timestamp else {})}

    events = [ev("ok", 5), ev("huge", "1e40"), ev("float-huge", 1e308), ev("negative", -5),
              ev("far-future", 1, "9999-12-31T23:59:59-12:00"), ev("ok2", "0.5")]
    response = await api.client.post("/v1/usage-events", json={"events": events}, headers=h)
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["accepted"]) == ["ok", "ok2"]
    assert sorted(r["event_id"] for r in body["rejected"]) == ["far-future", "float-huge", "huge", "negative"]


async def test_partner_usage_date_filters_with_odd_offsets_or_no_zone_are_never_a_500(api: Api) -> None:
    user = await api.signup()
    partner = await api.partner(user)
    for query in ["start=2026-01-01T00:00:00", "start=0001-01-01T00:00:00%2B14:00", "end=0001-01-02T00:00:00Z",
                  "start=9999-12-31T23:00:00-12:00&end=9999-12-31T23:59:59-12:00", "end=0001-01-01T00:00:00Z"]:
        response = await api.client.get(f"/v1/partners/{partner['id']}/usage?{query}", headers=user.headers)
        assert response.status_code in (200, 400, 422), (query, response.text)
        if response.status_code != 200:
            assert response.headers["content-type"].startswith("application/problem+json")
    # a time without a zone is read as UTC, and answered as UTC
    ok = await api.client.get(f"/v1/partners/{partner['id']}/usage?start=2026-01-01T00:00:00&end=2026-01-02T00:00:00",
                              headers=user.headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["start"].startswith("2026-01-01T00:00:00") and ok.json()["start"].endswith("Z")
