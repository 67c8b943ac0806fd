"""Subscriptions and API keys: business rules (no HTTP, never commits).

Every query is scoped by the consumer who owns the row; another consumer's subscription or key
is `NotFound`. Anything the gateway caches (key records, subscriptions) is invalidated through
`core.cache.invalidate_after_commit`, so every process drops it within a second of the commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from marketplace.core.cache import invalidate_after_commit
from marketplace.core.db import Base, utcnow
from marketplace.core.errors import Conflict, NotFound, PaymentRequired, Unprocessable
from marketplace.core.events import publish
from marketplace.core.ids import new_id
from marketplace.core.security import OpaqueToken, new_token
from marketplace.settings import get_settings
from marketplace.subscriptions.models import LIVE_STATUSES, ApiKey, Subscription
from marketplace.subscriptions.periods import add_months, period_containing
from partners.models import Partner
from partners.publishing.models import Api, Plan, PlanVersion

KEY_KIND = "mk"  # API keys look like mk_Ab3…; the prefix (mk_ + 8 chars) is stored for lookup


def is_paid(version: PlanVersion) -> bool:
    """A free plan has no fee and no usage charge."""
    return bool(version.monthly_fee) or bool(version.unit_pricing)


async def require_payment_method(session: AsyncSession, consumer_id: str) -> None:
    """Raise 402 unless the consumer has a default payment method (saved through
    `POST /v1/billing/setup`; billing keeps it in `billing_customers`, read here as data)."""
    customers = Base.metadata.tables["billing_customers"]
    method = await session.scalar(select(customers.c.default_payment_method)
                                  .where(customers.c.consumer_id == consumer_id))
    if not method:
        raise PaymentRequired(
            "This plan is paid and you have no payment method on file. Add one with POST /v1/billing/setup, "
            "then subscribe again.",
            slug="payment-method-required",
        )


def subscription_event(sub: Subscription, **extra: Any) -> dict[str, Any]:
    return {"id": sub.id, "status": sub.status, "api_id": sub.api_id, "plan_id": sub.plan_id,
            "plan_version_id": sub.plan_version_id, "consumer_id": sub.consumer_id,
            "current_period_start": sub.current_period_start.isoformat(),
            "current_period_end": sub.current_period_end.isoformat(),
            "cancel_at_period_end": sub.cancel_at_period_end, **extra}


async def _plan_for_subscribing(session: AsyncSession, plan_id: str) -> tuple[Plan, PlanVersion, Api]:
    row = (await session.execute(
        select(Plan, PlanVersion, Api)
        .join(PlanVersion, (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version))
        .join(Api, Api.id == Plan.api_id)
        .join(Partner, Partner.id == Api.partner_id)
        .where(Plan.id == plan_id, Partner.status == "active")  # a suspended partner sells nothing
    )).first()
    if row is None or row[2].status != "published":
        raise NotFound(f"No plan {plan_id!r} on a published API. Browse plans with GET /v1/catalog/apis.")
    plan, version, api = row
    if plan.status != "active":
        raise Unprocessable(f"Plan {plan_id!r} is no longer offered. Pick an active plan of this API "
                            f"(GET /v1/catalog/apis/{api.slug}).")
    return plan, version, api


async def create_subscription(session: AsyncSession, consumer_id: str, plan_id: str) -> tuple[Subscription, str]:
    plan, version, api = await _plan_for_subscribing(session, plan_id)
    existing = await session.scalar(select(Subscription).where(
        Subscription.consumer_id == consumer_id, Subscription.api_id == api.id,
        Subscription.status.in_(LIVE_STATUSES)))
    if existing is not None:
        raise Conflict(f"You already subscribe to this API ({existing.id}). To switch plans, call "
                       f"POST /v1/subscriptions/{existing.id}/change-plan with {{\"plan_id\": \"{plan_id}\"}}.",
                       subscription_id=existing.id)
    if is_paid(version):
        await require_payment_method(session, consumer_id)
    now = utcnow()
    sub = Subscription(id=new_id("subscription"), consumer_id=consumer_id, api_id=api.id, partner_id=api.partner_id,
                       plan_id=plan.id, plan_version_id=version.id, status="active", current_period_start=now,
                       current_period_end=add_months(now, 1), cancel_at_period_end=False, revision=1,
                       created_at=now, updated_at=now)
    session.add(sub)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent subscribe to the same API won the race
        raise Conflict("You already subscribe to this API. List yours with GET /v1/subscriptions.") from exc
    publish(session, "subscription.created", subscription_event(sub, plan_name=version.name),
            partner_id=sub.partner_id, consumer_id=consumer_id)
    return sub, version.name


async def get_owned(session: AsyncSession, consumer_id: str, subscription_id: str,
                    *, for_update: bool = False) -> Subscription:
    stmt = select(Subscription).where(Subscription.id == subscription_id, Subscription.consumer_id == consumer_id)
    if for_update:
        stmt = stmt.with_for_update()
    sub = await session.scalar(stmt)
    if sub is None:
        raise NotFound(f"No subscription {subscription_id!r} of yours. List them with GET /v1/subscriptions.")
    return sub


async def plan_name(session: AsyncSession, plan_version_id: str) -> str:
    return str(await session.scalar(select(PlanVersion.name).where(PlanVersion.id == plan_version_id)) or "")


async def change_plan(session: AsyncSession, consumer_id: str, subscription_id: str,
                      plan_id: str) -> tuple[Subscription, str]:
    sub = await get_owned(session, consumer_id, subscription_id, for_update=True)
    if sub.status == "canceled":
        raise Conflict("This subscription is canceled. Subscribe again with POST /v1/subscriptions.")
    plan, version, api = await _plan_for_subscribing(session, plan_id)
    if api.id != sub.api_id:
        raise Unprocessable(f"Plan {plan_id!r} belongs to another API. Subscribe to it with POST /v1/subscriptions.")
    if plan.id == sub.plan_id and version.id == sub.plan_version_id:
        return sub, version.name
    current_currency = await session.scalar(select(PlanVersion.currency).where(PlanVersion.id == sub.plan_version_id))
    if current_currency is not None and version.currency != current_currency:
        # The period's fee is prorated across both plans on one invoice: it cannot mix currencies.
        raise Unprocessable(f"Plan {plan_id!r} is priced in {version.currency.upper()}, this subscription in "
                            f"{current_currency.upper()}; a plan change cannot switch currency. Cancel this "
                            "subscription and subscribe to the other plan instead.",
                            errors=[{"field": "plan_id", "message": "different currency"}])
    if is_paid(version):
        await require_payment_method(session, consumer_id)
    previous = sub.plan_id
    # Billing prorates the period's fee by day from these rows (its table, written here as data).
    await session.execute(insert(Base.metadata.tables["billing_plan_changes"]).values(
        id=f"pc_{str(ULID()).lower()}", subscription_id=sub.id, from_plan_version_id=sub.plan_version_id,
        to_plan_version_id=version.id, changed_at=utcnow()))
    sub.plan_id, sub.plan_version_id = plan.id, version.id
    sub.cancel_at_period_end = False
    sub.revision += 1
    invalidate_after_commit(session, "subscription", sub.id)
    publish(session, "subscription.updated", subscription_event(sub, previous_plan_id=previous, plan_name=version.name),
            partner_id=sub.partner_id, consumer_id=consumer_id)
    return sub, version.name


async def cancel(session: AsyncSession, consumer_id: str, subscription_id: str, *, now: bool) -> Subscription:
    sub = await get_owned(session, consumer_id, subscription_id, for_update=True)
    if sub.status == "canceled":
        return sub
    if now:
        await end_subscription(session, sub)
    elif not sub.cancel_at_period_end:
        sub.cancel_at_period_end = True
        sub.revision += 1
        invalidate_after_commit(session, "subscription", sub.id)
        publish(session, "subscription.updated", subscription_event(sub), partner_id=sub.partner_id,
                consumer_id=consumer_id)
    return sub


async def end_subscription(session: AsyncSession, sub: Subscription) -> None:
    """Cancel now: the gateway refuses its keys within a second. The final period is cut at the
    cancellation, and billing's close still invoices it (usage, and the fee for the days used)."""
    sub.status = "canceled"
    sub.canceled_at = utcnow()
    if sub.current_period_end > sub.canceled_at:
        sub.current_period_end = sub.canceled_at
    sub.revision += 1
    invalidate_after_commit(session, "subscription", sub.id)
    publish(session, "subscription.canceled", subscription_event(sub), partner_id=sub.partner_id,
            consumer_id=sub.consumer_id)


async def renew_due(session: AsyncSession, now: datetime | None = None, limit: int = 500) -> int:
    """Advance every live subscription whose period has ended (or end it, if it was set to cancel)."""
    now = now or utcnow()
    subs = (await session.scalars(
        select(Subscription).where(Subscription.status.in_(LIVE_STATUSES), Subscription.current_period_end <= now)
        .order_by(Subscription.current_period_end).limit(limit).with_for_update(skip_locked=True)
    )).all()
    for sub in subs:
        if sub.cancel_at_period_end:
            await end_subscription(session, sub)
            continue
        sub.current_period_start, sub.current_period_end = period_containing(sub.created_at, now)
        sub.revision += 1
        invalidate_after_commit(session, "subscription", sub.id)
        publish(session, "subscription.updated", subscription_event(sub, renewed=True), partner_id=sub.partner_id,
                consumer_id=sub.consumer_id)
    return len(subs)


# --- API keys -------------------------------------------------------------------------------


async def create_key(session: AsyncSession, consumer_id: str, subscription_id: str,
                     name: str) -> tuple[ApiKey, OpaqueToken]:
    sub = await get_owned(session, consumer_id, subscription_id)
    if sub.status == "canceled":
        raise Conflict("This subscription is canceled; it cannot have new keys. Subscribe again first.")
    token = new_token(KEY_KIND)
    now = utcnow()
    key = ApiKey(id=new_id("api_key"), consumer_id=consumer_id, subscription_id=sub.id, name=name,
                 prefix=token.prefix, key_hash=token.hash, created_at=now, updated_at=now)
    session.add(key)
    await session.flush()
    # A gateway may hold a negative cache entry for this hash (vanishingly unlikely): drop it.
    invalidate_after_commit(session, "key", token.hash)
    return key, token


async def list_keys(session: AsyncSession, consumer_id: str, *, subscription_id: str | None = None,
                    include_revoked: bool = False) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.consumer_id == consumer_id)
    if subscription_id:
        stmt = stmt.where(ApiKey.subscription_id == subscription_id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return list((await session.scalars(stmt.order_by(ApiKey.id.desc()))).all())


async def _owned_key(session: AsyncSession, consumer_id: str, key_id: str) -> ApiKey:
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.consumer_id == consumer_id)
                               .with_for_update())
    if key is None:
        raise NotFound(f"No API key {key_id!r} of yours. List them with GET /v1/api-keys.")
    return key


async def revoke_key(session: AsyncSession, consumer_id: str, key_id: str) -> ApiKey:
    key = await _owned_key(session, consumer_id, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        invalidate_after_commit(session, "key", key.key_hash)
    return key


async def rotate_key(session: AsyncSession, consumer_id: str, key_id: str,
                     overlap_seconds: int | None) -> tuple[ApiKey, OpaqueToken, datetime]:
    old = await _owned_key(session, consumer_id, key_id)
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise Conflict("This key is revoked or expired; create a new one with POST /v1/api-keys.")
    if overlap_seconds is None:
        overlap = timedelta(hours=get_settings().api_key_rotation_overlap_hours)
    else:
        overlap = timedelta(seconds=overlap_seconds)
    expires = now + overlap
    if old.expires_at is None or expires < old.expires_at:
        old.expires_at = expires
    invalidate_after_commit(session, "key", old.key_hash)
    new_key, token = await create_key(session, consumer_id, old.subscription_id, old.name)
    assert old.expires_at is not None
    return new_key, token, old.expires_at


async def mark_keys_used(session: AsyncSession, used: dict[str, datetime]) -> None:
    """Batched `last_used_at` (the gateway records uses in Redis; a job writes them here)."""
    for key_id, at in used.items():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id)
                              .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < at))
                              .values(last_used_at=at))


# --- read side for the portal ----------------------------------------------------------------


async def list_with_plans(session: AsyncSession, consumer_id: str,
                          *, include_canceled: bool = False) -> list[tuple[Subscription, PlanVersion, Api]]:
    """The consumer's subscriptions, newest first, each with its plan version and API."""
    stmt = (select(Subscription, PlanVersion, Api)
            .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
            .join(Api, Api.id == Subscription.api_id)
            .where(Subscription.consumer_id == consumer_id))
    if not include_canceled:
        stmt = stmt.where(Subscription.status.in_(LIVE_STATUSES))
    return [(s, v, a) for s, v, a in (await session.execute(stmt.order_by(Subscription.id.desc()))).all()]


async def subscribers_per_plan(session: AsyncSession, partner_id: str) -> list[tuple[str, str, str, int]]:
    """(api_id, plan_id, plan name, live subscriptions) for every plan of the partner's APIs."""
    count = func.count(Subscription.id)
    rows = await session.execute(
        select(Plan.api_id, Plan.id, func.min(PlanVersion.name), count)
        .join(Api, Api.id == Plan.api_id)
        .join(PlanVersion, (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version))
        .outerjoin(Subscription, (Subscription.plan_id == Plan.id) & Subscription.status.in_(LIVE_STATUSES))
        .where(Api.partner_id == partner_id)
        .group_by(Plan.api_id, Plan.id).order_by(Plan.api_id, Plan.id))
    return [(a, p, n, int(c)) for a, p, n, c in rows.all()]
