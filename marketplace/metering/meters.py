"""Partner-defined meters and the ingestion API for them (custom usage the gateway cannot see).

Each event's idempotency key is `(api_id, event_id)`: a resent event is reported as a duplicate
and never counted twice. Aggregations per meter over a period: count, sum, max, unique (distinct
values), last (the latest value by timestamp).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from marketplace.core.db import Base, utcnow
from marketplace.core.errors import Conflict, NotFound
from marketplace.core.security import Principal
from marketplace.core.tenancy import partner_role
from marketplace.metering.models import Meter, MeterEvent
from marketplace.metering.schemas import RejectedOut, UsageEventIn, UsageEventsOut
from marketplace.subscriptions.models import Subscription
from partners.publishing.models import Api

MAX_VALUE = Decimal(10) ** 26  # meter_events.value is NUMERIC(38, 12)


async def api_of_member(session: AsyncSession, principal: Principal, api_id: str) -> Api:
    api = await session.get(Api, api_id)
    if api is None:
        raise NotFound(f"No API {api_id!r} of a partner you belong to.")
    try:
        await partner_role(session, principal, api.partner_id)
    except NotFound:
        raise NotFound(f"No API {api_id!r} of a partner you belong to.") from None
    return api


async def create_meter(session: AsyncSession, principal: Principal, api_id: str, name: str, aggregation: str,
                       description: str) -> Meter:
    await api_of_member(session, principal, api_id)
    meter = Meter(id=f"mtr_{str(ULID()).lower()}", api_id=api_id, name=name, aggregation=aggregation,
                  description=description, created_at=utcnow())
    session.add(meter)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"This API already has a meter named {name!r}.") from None
    return meter


async def list_meters(session: AsyncSession, principal: Principal, api_id: str) -> list[Meter]:
    await api_of_member(session, principal, api_id)
    return list((await session.scalars(select(Meter).where(Meter.api_id == api_id).order_by(Meter.name))).all())


async def ingest(session: AsyncSession, principal: Principal, events: list[UsageEventIn]) -> UsageEventsOut:
    members = Base.metadata.tables["partner_members"]
    my_partners = set((await session.scalars(
        select(members.c.partner_id).where(members.c.user_id == principal.user_id))).all())
    sub_ids = {e.subscription_id for e in events}
    subs = {s.id: s for s in (await session.scalars(select(Subscription).where(Subscription.id.in_(sub_ids)))).all()
            if s.partner_id in my_partners}
    meters = {(m.api_id, m.name): m for m in (await session.scalars(
        select(Meter).where(Meter.api_id.in_({s.api_id for s in subs.values()})))).all()}
    rows: list[dict[str, Any]] = []
    rejected: list[RejectedOut] = []
    seen: set[tuple[str, str]] = set()
    duplicates: list[str] = []
    now = utcnow()
    for e in events:
        sub = subs.get(e.subscription_id)
        if sub is None:
            rejected.append(RejectedOut(e.event_id, f"No subscription {e.subscription_id!r} to an API of yours."))
            continue
        meter = meters.get((sub.api_id, e.meter))
        if meter is None:
            rejected.append(RejectedOut(e.event_id, f"No meter {e.meter!r} on this API; create it with "
                                        f"POST /v1/apis/{sub.api_id}/meters."))
            continue
        try:
            value = Decimal(str(e.value))
            if not value.is_finite():
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            rejected.append(RejectedOut(e.event_id, "value must be a finite number."))
            continue
        if value < 0 or value >= MAX_VALUE:
            # meter_events.value is NUMERIC(38, 12): larger values cannot be stored (they used to fail
            # the whole batch with a 500), and usage is never negative.
            rejected.append(RejectedOut(e.event_id, f"value must be between 0 and {MAX_VALUE:,} (exclusive)."))
            continue
        occurred_at = now
        if e.timestamp is not None:
            try:
                occurred_at = (e.timestamp if e.timestamp.tzinfo else e.timestamp.replace(tzinfo=UTC)).astimezone(UTC)
            except (OverflowError, ValueError):
                rejected.append(RejectedOut(e.event_id, "timestamp is out of range; send an ISO 8601 time in UTC."))
                continue
        if (sub.api_id, e.event_id) in seen:
            duplicates.append(e.event_id)
            continue
        seen.add((sub.api_id, e.event_id))
        rows.append({"api_id": sub.api_id, "event_id": e.event_id, "partner_id": sub.partner_id,
                     "subscription_id": sub.id, "consumer_id": sub.consumer_id, "meter_id": meter.id,
                     "value": value, "occurred_at": occurred_at, "recorded_at": now})
    accepted: list[str] = []
    if rows:
        inserted = set((await session.scalars(
            insert(MeterEvent).values(rows).on_conflict_do_nothing(index_elements=["api_id", "event_id"])
            .returning(MeterEvent.event_id))).all())
        for r in rows:
            (accepted if r["event_id"] in inserted else duplicates).append(r["event_id"])
    return UsageEventsOut(accepted=accepted, duplicates=duplicates, rejected=rejected)


async def meter_values(session: AsyncSession, subscription: Subscription, start: datetime,
                       end: datetime) -> list[tuple[str, str, str]]:
    """(meter, aggregation, value) for each of the API's meters over [start, end)."""
    meters = (await session.scalars(select(Meter).where(Meter.api_id == subscription.api_id)
                                    .order_by(Meter.name))).all()
    out = []
    for meter in meters:
        cond = (MeterEvent.subscription_id == subscription.id, MeterEvent.meter_id == meter.id,
                MeterEvent.occurred_at >= start, MeterEvent.occurred_at < end)
        agg = {"count": func.count(), "sum": func.coalesce(func.sum(MeterEvent.value), 0),
               "max": func.max(MeterEvent.value), "unique": func.count(distinct(MeterEvent.value))}
        if meter.aggregation == "last":
            value = await session.scalar(select(MeterEvent.value).where(*cond)
                                         .order_by(MeterEvent.occurred_at.desc(), MeterEvent.id.desc()).limit(1))
        else:
            value = await session.scalar(select(agg[meter.aggregation]).where(*cond))
        out.append((meter.name, meter.aggregation, _fmt(value)))
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "0"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value != 0 else "0"
    return str(value)
