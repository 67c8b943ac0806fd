"""The usage ledger: from the gateway's Redis stream into PostgreSQL, exactly once; and what
billing and the read side ask of it.

Flush (`flush_usage_stream`): XAUTOCLAIM entries another (dead) worker read but never
acknowledged, then XREADGROUP new ones; write each batch in ONE transaction — usage rows with
`ON CONFLICT (id) DO NOTHING`, rollups incremented only for the rows that insert returned, voids
flipping `billable` (and decrementing rollups only for rows they flipped), quota alerts — and
XACK + XDEL only after the commit. A crash anywhere before the XACK replays the batch, and the
conflict clauses make the replay a no-op.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.core.events import publish
from marketplace.core.redis import key as rkey
from marketplace.metering.models import UsageAlert, UsageEvent, UsageRollup
from marketplace.subscriptions.models import Subscription
from partners.publishing.models import PlanVersion

log = structlog.get_logger("marketplace.metering")

GROUP = "flush"
ROLLUP_LOCK = 4_200_300  # pg advisory lock key: usage flush batches vs rollup rebuilds
THRESHOLDS = ((80, "usage.threshold_reached"), (100, "quota.exceeded"))


@dataclass(frozen=True)
class EndpointUsage:
    endpoint_id: str | None
    method: str
    path: str
    calls: int
    units: int


def stream_key() -> str:
    return rkey("usage")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def ensure_group(redis: Redis) -> None:
    try:
        await redis.xgroup_create(stream_key(), GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _decode(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


async def flush_usage_stream(redis: Redis, sessionmaker: async_sessionmaker[AsyncSession], *,
                             consumer: str | None = None, batch: int = 1000, min_idle_ms: int = 60000,
                             max_batches: int = 100) -> int:
    """Move usage entries from the Redis stream to PostgreSQL; returns how many entries it handled."""
    consumer = consumer or consumer_name()
    await ensure_group(redis)
    handled = 0
    start = "0-0"
    for _ in range(max_batches):  # entries read by a worker that died before acknowledging them
        claimed = await redis.xautoclaim(stream_key(), GROUP, consumer, min_idle_ms, start_id=start, count=batch)
        start, entries = claimed[0], [e for e in claimed[1] if e and e[1]]
        if entries:
            handled += await write_batch(redis, sessionmaker, entries)
        if start in (b"0-0", "0-0"):
            break
    for _ in range(max_batches):
        result = await redis.xreadgroup(GROUP, consumer, {stream_key(): ">"}, count=batch)
        entries = result[0][1] if result else []
        if not entries:
            break
        handled += await write_batch(redis, sessionmaker, entries)
    await flush_key_last_used(redis, sessionmaker)
    return handled


async def write_batch(redis: Redis, sessionmaker: async_sessionmaker[AsyncSession],
                      entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    uses: dict[str, dict[str, Any]] = {}
    voids: dict[str, dict[str, Any]] = {}
    for _entry_id, raw in entries:
        f = _decode(raw)
        try:
            row = {"id": f["r"], "subscription_id": f["s"], "consumer_id": f["c"], "partner_id": f["p"],
                   "api_id": f["a"], "key_id": f.get("k") or None, "endpoint_id": f["e"], "method": f["m"],
                   "path": f["pt"], "units": int(f["u"]),
                   "occurred_at": datetime.fromtimestamp(int(f["ts"]) / 1000, UTC)}
        except (KeyError, ValueError):
            log.error("usage_entry_malformed", entry=f)
            continue
        (voids if f.get("t") == "v" else uses)[row["id"]] = row
    async with sessionmaker.begin() as session:
        await record_usage(session, list(uses.values()), list(voids.values()))
    ids = [entry_id for entry_id, _ in entries]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xack(stream_key(), GROUP, *ids)
        pipe.xdel(stream_key(), *ids)
        await pipe.execute()
    return len(entries)


async def record_usage(session: AsyncSession, uses: list[dict[str, Any]], voids: list[dict[str, Any]]) -> None:
    """Insert usage rows idempotently and keep the rollups in step (only for rows that changed)."""
    await session.execute(select(func.pg_advisory_xact_lock(ROLLUP_LOCK)))
    deltas: dict[tuple[str, str, datetime], list[Any]] = {}

    def add(row: Any, sign: int) -> None:
        k = (row.subscription_id, row.endpoint_id, floor_hour(row.occurred_at))
        d = deltas.setdefault(k, [row, 0, 0])
        d[1] += sign
        d[2] += sign * row.units

    cols = (UsageEvent.id, UsageEvent.subscription_id, UsageEvent.consumer_id, UsageEvent.partner_id,
            UsageEvent.api_id, UsageEvent.endpoint_id, UsageEvent.method, UsageEvent.path, UsageEvent.units,
            UsageEvent.occurred_at)
    if uses:
        for chunk in _chunks(uses, 2000):
            stmt = insert(UsageEvent).values([{**r, "billable": True} for r in chunk])
            stmt = stmt.on_conflict_do_nothing(index_elements=["id"]).returning(*cols)
            for row in (await session.execute(stmt)).all():
                add(row, +1)
    if voids:
        for chunk in _chunks(voids, 2000):
            stmt = insert(UsageEvent).values([{**r, "billable": False} for r in chunk])
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"], set_={"billable": False}, where=UsageEvent.billable.is_(True),
            ).returning(*cols, literal_column("(xmax = 0)").label("inserted"))
            for row in (await session.execute(stmt)).all():
                if not row.inserted:  # it had been billed: take it back out of the rollups
                    add(row, -1)
    if deltas:
        values = [{"subscription_id": k[0], "endpoint_id": k[1], "hour": k[2], "consumer_id": r.consumer_id,
                   "partner_id": r.partner_id, "api_id": r.api_id, "method": r.method, "path": r.path,
                   "calls": calls, "units": units} for k, (r, calls, units) in deltas.items()]
        stmt = insert(UsageRollup).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["subscription_id", "endpoint_id", "hour"],
            set_={"calls": UsageRollup.calls + stmt.excluded.calls, "units": UsageRollup.units + stmt.excluded.units},
        )
        await session.execute(stmt)
        await check_quota_alerts(session, {k[0] for k in deltas})


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def check_quota_alerts(session: AsyncSession, subscription_ids: set[str]) -> None:
    """Publish usage.threshold_reached (80 %) and quota.exceeded (100 %) once per period."""
    subs = (await session.execute(
        select(Subscription, PlanVersion.quota_limit)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .where(Subscription.id.in_(subscription_ids), PlanVersion.quota_limit.is_not(None),
               PlanVersion.quota_limit > 0)
    )).all()
    for sub, limit in subs:
        used = await period_units(session, sub.id, sub.current_period_start, sub.current_period_end)
        for threshold, event_type in THRESHOLDS:
            if used * 100 < threshold * limit:
                continue
            inserted = await session.scalar(
                insert(UsageAlert).values(subscription_id=sub.id, period_start=sub.current_period_start,
                                          threshold=threshold)
                .on_conflict_do_nothing().returning(UsageAlert.threshold))
            if inserted is not None:
                publish(session, event_type, {"subscription_id": sub.id, "api_id": sub.api_id, "threshold": threshold,
                                              "units": used, "quota": int(limit),
                                              "period_start": sub.current_period_start.isoformat(),
                                              "period_end": sub.current_period_end.isoformat()},
                        partner_id=sub.partner_id, consumer_id=sub.consumer_id)


async def flush_key_last_used(redis: Redis, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    from marketplace.subscriptions.service import mark_keys_used

    hash_key = rkey("key_used")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(hash_key)
        pipe.delete(hash_key)
        used_raw, _ = await pipe.execute()
    used = {k.decode(): datetime.fromtimestamp(int(v) / 1000, UTC) for k, v in used_raw.items() if k}
    if used:
        async with sessionmaker.begin() as session:
            await mark_keys_used(session, used)
    return len(used)


# --- reading the ledger ---------------------------------------------------------------------


def _edges(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    first_full = floor_hour(start)
    if first_full < start:
        first_full += timedelta(hours=1)
    last_full = floor_hour(end)
    return first_full, last_full


async def usage_for_period(session: AsyncSession, subscription_id: str, start: datetime,
                           end: datetime) -> list[EndpointUsage]:
    """Billable calls and units per endpoint in [start, end): whole hours from the rollups, the
    partial hours at either edge from the raw events, so any period boundary is exact."""
    h0, h1 = _edges(start, end)
    totals: dict[str, list[Any]] = {}

    def add(endpoint_id: str, method: str, path: str, calls: int, units: int) -> None:
        t = totals.setdefault(endpoint_id, [method, path, 0, 0])
        t[2] += int(calls)
        t[3] += int(units)

    raw_ranges = [(start, end)] if h0 >= h1 else [(start, h0), (h1, end)]
    if h0 < h1:
        rows = await session.execute(
            select(UsageRollup.endpoint_id, func.min(UsageRollup.method), func.min(UsageRollup.path),
                   func.sum(UsageRollup.calls), func.sum(UsageRollup.units))
            .where(UsageRollup.subscription_id == subscription_id, UsageRollup.hour >= h0, UsageRollup.hour < h1)
            .group_by(UsageRollup.endpoint_id))
        for r in rows.all():
            add(*r)
    for lo, hi in raw_ranges:
        if lo >= hi:
            continue
        rows = await session.execute(
            select(UsageEvent.endpoint_id, func.min(UsageEvent.method), func.min(UsageEvent.path),
                   func.count(), func.sum(UsageEvent.units))
            .where(UsageEvent.subscription_id == subscription_id, UsageEvent.billable.is_(True),
                   UsageEvent.occurred_at >= lo, UsageEvent.occurred_at < hi)
            .group_by(UsageEvent.endpoint_id))
        for r in rows.all():
            add(*r)
    return sorted((EndpointUsage(endpoint_id=e, method=t[0], path=t[1], calls=t[2], units=t[3])
                   for e, t in totals.items() if t[2] or t[3]), key=lambda u: (u.path, u.method))


async def period_units(session: AsyncSession, subscription_id: str, start: datetime, end: datetime) -> int:
    return sum(u.units for u in await usage_for_period(session, subscription_id, start, end))


async def rebuild_rollups(session: AsyncSession, subscription_id: str | None = None) -> int:
    """Recompute hourly rollups from the raw events (all, or one subscription's). Takes the same
    transaction-level advisory lock as the flush, so a rebuild never interleaves with a batch."""
    await session.execute(select(func.pg_advisory_xact_lock(ROLLUP_LOCK)))
    cond = [UsageRollup.subscription_id == subscription_id] if subscription_id else []
    await session.execute(delete(UsageRollup).where(*cond))
    hour = func.date_trunc("hour", func.timezone("UTC", UsageEvent.occurred_at))
    src = (select(UsageEvent.subscription_id, UsageEvent.endpoint_id, func.timezone("UTC", hour),
                  func.min(UsageEvent.consumer_id), func.min(UsageEvent.partner_id), func.min(UsageEvent.api_id),
                  func.min(UsageEvent.method), func.min(UsageEvent.path), func.count(), func.sum(UsageEvent.units))
           .where(UsageEvent.billable.is_(True),
                  *([UsageEvent.subscription_id == subscription_id] if subscription_id else []))
           .group_by(UsageEvent.subscription_id, UsageEvent.endpoint_id, hour))
    result = await session.execute(insert(UsageRollup).from_select(
        ["subscription_id", "endpoint_id", "hour", "consumer_id", "partner_id", "api_id", "method", "path",
         "calls", "units"], src))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def partner_usage(session: AsyncSession, partner_id: str, *, api_id: str | None, group_by: str,
                        start: datetime, end: datetime) -> list[dict[str, Any]]:
    """A partner's billable usage from the hourly rollups, by consumer or by day."""
    cond = [UsageRollup.partner_id == partner_id, UsageRollup.hour >= floor_hour(start), UsageRollup.hour < end]
    if api_id:
        cond.append(UsageRollup.api_id == api_id)
    if group_by == "day":
        day = func.date_trunc("day", func.timezone("UTC", UsageRollup.hour))
        rows = await session.execute(
            select(func.to_char(day, "YYYY-MM-DD"), UsageRollup.api_id, func.sum(UsageRollup.calls),
                   func.sum(UsageRollup.units)).where(*cond).group_by(day, UsageRollup.api_id).order_by(day.desc()))
        return [{"day": r[0], "api_id": r[1], "calls": int(r[2]), "units": int(r[3])} for r in rows.all()]
    rows = await session.execute(
        select(UsageRollup.consumer_id, UsageRollup.subscription_id, UsageRollup.api_id, func.sum(UsageRollup.calls),
               func.sum(UsageRollup.units)).where(*cond)
        .group_by(UsageRollup.consumer_id, UsageRollup.subscription_id, UsageRollup.api_id)
        .order_by(func.sum(UsageRollup.units).desc()))
    return [{"consumer_id": r[0], "subscription_id": r[1], "api_id": r[2], "calls": int(r[3]), "units": int(r[4])}
            for r in rows.all()]




# --- read side for the portal (charts, status page, /metrics) -------------------------------


async def daily_usage(session: AsyncSession, subscription_id: str, start: datetime,
                      end: datetime) -> list[tuple[str, int, int]]:
    """Billable (day 'YYYY-MM-DD' in UTC, calls, units) of one subscription in [start, end):
    whole hours from the rollups, the partial hours at either edge from the raw events (as
    `usage_for_period` does), so a period that starts mid-hour is exact."""
    h0, h1 = _edges(start, end)
    totals: dict[str, list[int]] = {}

    def add(day: str, calls: Any, units: Any) -> None:
        t = totals.setdefault(day, [0, 0])
        t[0] += int(calls or 0)
        t[1] += int(units or 0)

    if h0 < h1:
        day = func.date_trunc("day", func.timezone("UTC", UsageRollup.hour))
        rows = await session.execute(
            select(func.to_char(day, "YYYY-MM-DD"), func.sum(UsageRollup.calls), func.sum(UsageRollup.units))
            .where(UsageRollup.subscription_id == subscription_id, UsageRollup.hour >= h0, UsageRollup.hour < h1)
            .group_by(day))
        for r in rows.all():
            add(*r)
    raw_ranges = [(start, end)] if h0 >= h1 else [(start, h0), (h1, end)]
    day = func.date_trunc("day", func.timezone("UTC", UsageEvent.occurred_at))
    for lo, hi in raw_ranges:
        if lo >= hi:
            continue
        rows = await session.execute(
            select(func.to_char(day, "YYYY-MM-DD"), func.count(), func.sum(UsageEvent.units))
            .where(UsageEvent.subscription_id == subscription_id, UsageEvent.billable.is_(True),
                   UsageEvent.occurred_at >= lo, UsageEvent.occurred_at < hi)
            .group_by(day))
        for r in rows.all():
            add(*r)
    return sorted((d, c, u) for d, (c, u) in totals.items() if c or u)


async def flush_lag_seconds(redis: Redis, now: datetime | None = None) -> float:
    """Age of the oldest entry still in the usage stream (read-but-unacknowledged ones stay there
    too, until their batch commits); 0 when the stream is empty."""
    oldest = await redis.xrange(stream_key(), "-", "+", count=1)
    if not oldest:
        return 0.0
    entry_id = oldest[0][0]
    ms = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-", 1)[0])
    now_ms = (now or datetime.now(UTC)).timestamp() * 1000
    return max(0.0, (now_ms - ms) / 1000)
