"""Billing's read side: invoice views, partner earnings, operator metrics."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing.models import Budget, Invoice, InvoiceLine
from marketplace.billing.schemas import (
    BudgetOut,
    CurrencyMetrics,
    EarningsOut,
    EarningsRow,
    InvoiceLineOut,
    InvoiceOut,
    MetricsOut,
)
from marketplace.ledger import service as ledger
from marketplace.ledger.models import DISPUTES, PLATFORM_REVENUE, REFUNDS
from marketplace.subscriptions.models import LIVE_STATUSES, Subscription
from partners.publishing.models import Api, PlanVersion


async def invoice_lines(session: AsyncSession, invoice_id: str) -> Sequence[InvoiceLine]:
    return (await session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
                                  .order_by(InvoiceLine.position))).all()


def invoice_out(invoice: Invoice, lines: Sequence[InvoiceLine] | None) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id, number=invoice.number, status=invoice.status, subscription_id=invoice.subscription_id,
        api_id=invoice.api_id, currency=invoice.currency, total=invoice.total, amount_refunded=invoice.amount_refunded,
        amount_disputed=invoice.amount_disputed, period_start=invoice.period_start, period_end=invoice.period_end,
        created_at=invoice.created_at, finalized_at=invoice.finalized_at, paid_at=invoice.paid_at,
        attempt_count=invoice.attempt_count, next_attempt_at=invoice.next_attempt_at,
        failure_message=invoice.failure_message, receipt_url=invoice.receipt_url, plan=invoice.terms,
        lines=None if lines is None else [InvoiceLineOut(
            id=line.id, kind=line.kind, description=line.description, amount=line.amount, quantity=line.quantity,
            calls=line.calls, endpoint_id=line.endpoint_id, method=line.method, path=line.path,
            period_start=line.period_start, period_end=line.period_end) for line in lines])


def budget_out(budget: Budget, estimate: int) -> BudgetOut:
    return BudgetOut(id=budget.id, subscription_id=budget.subscription_id, monthly_amount=budget.monthly_amount,
                     currency=budget.currency, alert_thresholds=list(budget.alert_thresholds), hard_cap=budget.hard_cap,
                     period_start=budget.period_start, notified_thresholds=list(budget.notified_thresholds or []),
                     capped=budget.capped, estimate=estimate)


async def earnings(session: AsyncSession, partner_id: str) -> EarningsOut:
    period = func.to_char(func.timezone("UTC", Invoice.period_start), "YYYY-MM")
    rows = await session.execute(
        select(Invoice.api_id, Api.name, period, Invoice.currency, func.sum(Invoice.total),
               func.sum(Invoice.platform_fee_amount), func.sum(Invoice.partner_amount),
               func.sum(Invoice.amount_refunded + Invoice.amount_disputed), func.count())
        .join(Api, Api.id == Invoice.api_id)
        .where(Invoice.partner_id == partner_id, Invoice.status == "paid")
        .group_by(Invoice.api_id, Api.name, period, Invoice.currency)
        .order_by(period.desc(), Invoice.api_id))
    data = [EarningsRow(api_id=a, api_name=n, period=p, currency=c, gross=int(g), platform_fee=int(f),
                        partner_share=int(s), refunded=int(r), invoices=int(k)) for a, n, p, c, g, f, s, r, k in rows]
    payable = {currency: await ledger.partner_payable_balance(session, partner_id, currency)
               for _, currency in await ledger.partner_payable_currencies(session, partner_id)}
    return EarningsOut(partner_id=partner_id, data=data, payable=payable)


async def metrics(session: AsyncSession) -> MetricsOut:
    gmv = dict((c, int(t)) for c, t in await session.execute(
        select(Invoice.currency, func.sum(Invoice.total)).where(Invoice.status == "paid").group_by(Invoice.currency)))
    revenue: dict[str, int] = {}
    for b in await ledger.balances(session):
        if b.kind in (PLATFORM_REVENUE, REFUNDS, DISPUTES):
            revenue[b.currency] = revenue.get(b.currency, 0) - b.balance
    mrr = dict((c, int(t)) for c, t in await session.execute(
        select(PlanVersion.currency, func.sum(PlanVersion.monthly_fee))
        .join(Subscription, Subscription.plan_version_id == PlanVersion.id)
        .where(Subscription.status.in_(LIVE_STATUSES)).group_by(PlanVersion.currency)))
    live = Subscription.status.in_(LIVE_STATUSES)
    partners = await session.scalar(select(func.count(distinct(Subscription.partner_id))).where(live)) or 0
    consumers = await session.scalar(select(func.count(distinct(Subscription.consumer_id))).where(live)) or 0
    subs = await session.scalar(select(func.count()).select_from(Subscription).where(live)) or 0
    counts = dict((s, int(n)) for s, n in await session.execute(
        select(Invoice.status, func.count()).where(Invoice.status.in_(("open", "failed"))).group_by(Invoice.status)))
    currencies = sorted(set(gmv) | set(revenue) | set(mrr))
    return MetricsOut(
        by_currency=[CurrencyMetrics(currency=c, gmv=gmv.get(c, 0), platform_revenue=revenue.get(c, 0),
                                     mrr=mrr.get(c, 0)) for c in currencies],
        active_partners=int(partners), active_consumers=int(consumers), live_subscriptions=int(subs),
        open_invoices=counts.get("open", 0), failed_invoices=counts.get("failed", 0))


async def invoices_of(session: AsyncSession, consumer_id: str, limit: int = 20) -> Sequence[Invoice]:
    """The consumer's latest invoices, newest first (the portal's dashboard)."""
    return (await session.scalars(select(Invoice).where(Invoice.consumer_id == consumer_id)
                                  .order_by(Invoice.id.desc()).limit(limit))).all()
