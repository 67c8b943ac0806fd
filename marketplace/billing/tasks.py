"""Billing jobs: close periods, charge invoices, retry and enforce the grace period, handle Stripe
events from the inbox, evaluate budgets. Also exports billing's `STRIPE_HANDLERS`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq.cron import cron
from sqlalchemy import select, update

from marketplace.billing import budgets, payments, service, stripe_events
from marketplace.billing.models import Invoice, StripeEvent
from marketplace.billing.stripe_events import STRIPE_HANDLERS
from marketplace.core.db import utcnow
from marketplace.settings import get_settings
from marketplace.subscriptions.models import Subscription

__all__ = ["CRON_JOBS", "FUNCTIONS", "STRIPE_HANDLERS"]


async def close_periods(ctx: dict[str, Any], period_end: str | None = None) -> dict[str, int]:
    """Invoice every subscription whose period ended by `period_end` (default now), then charge."""
    from datetime import datetime

    cutoff = datetime.fromisoformat(period_end) if period_end else utcnow()
    closed, to_charge = await service.close_all(ctx["sessionmaker"], cutoff, redis=ctx["redis_client"])
    for invoice_id in to_charge:
        await ctx["redis"].enqueue_job("charge_invoice", invoice_id, _job_id=f"charge-{invoice_id}")
    return {"closed": closed, "charging": len(to_charge)}


async def charge_invoice(ctx: dict[str, Any], invoice_id: str) -> str:
    if not get_settings().payments_enabled:
        return "payments-disabled"
    return await payments.charge_invoice(ctx["sessionmaker"], ctx["redis_client"], invoice_id)


MAX_EVENT_ATTEMPTS = 10


async def sync_blocks_after_commit(ctx: dict[str, Any], subscription_ids: Any) -> None:
    """Set or clear the gateway's block keys from committed state: written before the commit, a
    rolled-back transaction would leave the gateway refusing (or admitting) the wrong calls."""
    if not subscription_ids:
        return
    async with ctx["sessionmaker"]() as session:
        for subscription_id in subscription_ids:
            await payments.sync_block(session, ctx["redis_client"], subscription_id)


async def handle_stripe_event(ctx: dict[str, Any], event_id: str) -> str:
    try:
        async with ctx["sessionmaker"].begin() as session:
            result = await stripe_events.process(session, event_id)
            to_sync = session.info.pop("sync_block", set())
            to_charge = session.info.pop("charge", set())
        await sync_blocks_after_commit(ctx, to_sync)
        if get_settings().payments_enabled:
            for invoice_id in to_charge:
                await ctx["redis"].enqueue_job("charge_invoice", invoice_id, _job_id=f"charge-{invoice_id}-{event_id}")
        return result
    except Exception as exc:
        # Rolled back; record the failure so the sweep retries it (up to MAX_EVENT_ATTEMPTS times).
        async with ctx["sessionmaker"].begin() as session:
            await session.execute(update(StripeEvent).where(StripeEvent.id == event_id).values(
                attempts=StripeEvent.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000]))
        raise


async def billing_maintenance(ctx: dict[str, Any]) -> dict[str, int]:
    """Every few minutes: grace period → unpaid (+ block key), retries that are due, inbox sweep."""
    settings = get_settings()
    now = utcnow()
    async with ctx["sessionmaker"].begin() as session:
        overdue = (await session.scalars(select(Subscription).where(
            Subscription.status == "past_due",
            Subscription.past_due_since <= now - timedelta(days=settings.billing_grace_days)).with_for_update())).all()
        for sub in overdue:
            sub.status = "unpaid"
            sub.revision += 1
            from marketplace.core import cache

            cache.invalidate_after_commit(session, "subscription", sub.id)
        await session.flush()
        overdue_ids = [sub.id for sub in overdue]
        due = (await session.scalars(select(Invoice.id).where(Invoice.status.in_(("open", "failed")),
                                                              Invoice.next_attempt_at <= now))).all()
        stale = (await session.scalars(select(StripeEvent.id).where(
            StripeEvent.processed_at.is_(None), StripeEvent.received_at <= now - timedelta(minutes=1),
            StripeEvent.attempts < MAX_EVENT_ATTEMPTS))).all()
    await sync_blocks_after_commit(ctx, overdue_ids)
    if settings.payments_enabled:
        for invoice_id in due:
            await ctx["redis"].enqueue_job("charge_invoice", invoice_id, _job_id=f"retry-{invoice_id}-{now:%Y%m%d%H%M}")
    for event_id in stale:
        await ctx["redis"].enqueue_job("handle_stripe_event", event_id)
    return {"unpaid": len(overdue), "retries": len(due), "stale_events": len(stale)}


async def evaluate_budgets(ctx: dict[str, Any]) -> int:
    async with ctx["sessionmaker"].begin() as session:
        return await budgets.evaluate_all(session, ctx["redis_client"])


FUNCTIONS = [close_periods, charge_invoice, handle_stripe_event, billing_maintenance, evaluate_budgets]
CRON_JOBS = [
    # Every minute (periods end at each subscription's anchor time); one indexed query when nothing is due.
    cron(close_periods, second={30}, run_at_startup=False, unique=True),
    cron(billing_maintenance, minute=set(range(0, 60, 5)), run_at_startup=False, unique=True),
    cron(evaluate_budgets, run_at_startup=False, unique=True),
]
