"""Spend controls: a monthly budget per subscription with alert thresholds and an optional hard cap.

A periodic job (`evaluate_budgets`, every minute) rates each budgeted subscription's current period
from metered usage — the gateway's hot path never touches the database for this — publishes
`usage.threshold_reached` once per threshold per period, and with `hard_cap` sets the gateway's
block key (402, saying how to raise the budget) once the estimate reaches the budget. The key is
removed when the budget is raised (re-evaluated at once) or when the period rolls.
"""

from __future__ import annotations

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing.models import Budget
from marketplace.billing.payments import sync_block
from marketplace.billing.service import rate_period
from marketplace.core.db import utcnow
from marketplace.core.errors import NotFound, Unprocessable
from marketplace.core.events import publish
from marketplace.core.ids import new_id
from marketplace.subscriptions.models import Subscription

DEFAULT_THRESHOLDS = [50, 80, 100]


async def own_subscription(session: AsyncSession, consumer_id: str, subscription_id: str) -> Subscription:
    sub = await session.get(Subscription, subscription_id)
    if sub is None or sub.consumer_id != consumer_id:
        raise NotFound(f"No subscription {subscription_id!r} of yours. List yours with GET /v1/subscriptions.")
    return sub


async def set_budget(session: AsyncSession, sub: Subscription, *, monthly_amount: int, currency: str,
                     alert_thresholds: list[int] | None, hard_cap: bool) -> Budget:
    from marketplace.billing.service import terms_for

    terms = await terms_for(session, sub.plan_version_id)
    if currency != terms.currency:
        raise Unprocessable(f"This subscription is billed in {terms.currency}; set the budget in that currency.",
                            errors=[{"field": "currency", "message": f"must be {terms.currency}"}])
    budget = await session.scalar(select(Budget).where(Budget.subscription_id == sub.id).with_for_update())
    thresholds = sorted(set(alert_thresholds if alert_thresholds is not None else DEFAULT_THRESHOLDS))
    if budget is None:
        budget = Budget(id=new_id("budget"), subscription_id=sub.id, consumer_id=sub.consumer_id,
                        period_start=sub.current_period_start, notified_thresholds=[], capped=False, last_estimate=0)
        session.add(budget)
    raised = budget.monthly_amount is not None and monthly_amount > (budget.monthly_amount or 0)
    budget.monthly_amount, budget.currency, budget.hard_cap = monthly_amount, currency, hard_cap
    budget.alert_thresholds = thresholds
    if raised:
        # Thresholds are percentages of the new amount: let them fire again when reached again.
        budget.notified_thresholds = []
    await session.flush()
    return budget


async def evaluate(session: AsyncSession, redis: Redis, budget: Budget, sub: Subscription) -> int:
    """Re-estimate the period, fire thresholds, cap or uncap; returns the estimate."""
    if budget.period_start != sub.current_period_start:
        budget.period_start, budget.notified_thresholds, budget.capped = sub.current_period_start, [], False
    period = await rate_period(session, sub, sub.current_period_start, sub.current_period_end, until=utcnow())
    estimate = period.total
    budget.last_estimate = estimate
    fired = list(budget.notified_thresholds or [])
    for threshold in budget.alert_thresholds:
        if threshold not in fired and budget.monthly_amount > 0 and estimate * 100 >= budget.monthly_amount * threshold:
            fired.append(threshold)
            # Same type and keys as metering's quota alert, with kind "budget" and the money figures.
            publish(session, "usage.threshold_reached", {
                "kind": "budget", "subscription_id": sub.id, "api_id": sub.api_id, "threshold": threshold,
                "estimate": estimate, "budget": budget.monthly_amount, "currency": budget.currency,
                "period_start": sub.current_period_start.isoformat(),
                "period_end": sub.current_period_end.isoformat()}, consumer_id=sub.consumer_id)
    budget.notified_thresholds = sorted(fired)
    budget.capped = bool(budget.hard_cap and estimate >= budget.monthly_amount)
    await session.flush()
    await sync_block(session, redis, sub.id)
    return estimate


async def evaluate_all(session: AsyncSession, redis: Redis) -> int:
    rows = (await session.execute(select(Budget, Subscription).join(Subscription, Subscription.id == Budget.subscription_id)
                                  .where(Subscription.status != "canceled"))).all()
    for budget, sub in rows:
        await evaluate(session, redis, budget, sub)
    return len(rows)
