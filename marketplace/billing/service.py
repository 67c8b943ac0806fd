"""Invoices: rating a subscription's period, closing periods, previews and quotes.

Closing (`close_due`) takes every live subscription whose `current_period_end` <= the cut-off, rates
the period with the plan version it points at, writes an invoice with one line for the plan fee
(one per plan segment when the plan changed mid-period: prorated by day) and one per endpoint's
usage, snapshots the terms, posts `invoice.finalized` to the ledger, publishes `invoice.finalized`,
and rolls the subscription to its next period (or cancels it when `cancel_at_period_end`). The
invoice is a draft only inside that transaction: it is written `open` (owed; a job charges it) or
`paid` at once when the total is 0. `(subscription_id, period_start)` is unique, so closing twice
creates nothing new, and subscriptions are locked with SKIP LOCKED so two closers share the work.
A subscription cancelled at once (`DELETE /v1/subscriptions/{id}?now=true`) has its period cut at
the cancellation; the close still invoices that final period (all its usage, and the monthly fee
prorated by day, at least one day) and does not roll it.
A batch of 500 subscriptions takes a handful of statements (set-based inserts), see bench/billing.py.

Late usage: each invoice stores the units and usage amount it billed for its own period. When the
next period closes, the previous period's usage is asked for again; units that arrived since (a
late flush, a partner's late `event_id`) are billed on the new invoice as a `late_usage` line
priced as rate(all units) - rate(units already billed) with the previous period's terms (floored
at 0: volume pricing never turns late usage into a credit). Usage that arrives more than one
period late is not picked up.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from marketplace.billing import usage as usage_source
from marketplace.billing.models import Budget, Invoice, InvoiceLine, PlanChange
from marketplace.billing.rating import EndpointUsage, FeeLine, Rating, Terms, rate
from marketplace.core import cache
from marketplace.core.db import utcnow
from marketplace.core.errors import NotFound
from marketplace.core.events import Event
from marketplace.core.ids import new_id
from marketplace.ledger import service as ledger
from marketplace.settings import get_settings
from marketplace.subscriptions.models import Subscription
from partners.models import Partner
from partners.publishing.models import Api, PlanVersion


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` + n months, the day clamped to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def add_month(moment: datetime) -> datetime:
    return add_months(moment, 1)


def next_period(anchor: datetime, period_end: datetime) -> tuple[datetime, datetime]:
    """The period after one ending at `period_end`. Periods are `anchor + n months` (the subscription's
    start), computed from the anchor each time so a short month never shifts later periods (Jan 31 →
    Feb 28 → Mar 31); a period end off that grid (set by hand) just rolls one calendar month."""
    if anchor <= period_end:
        n = max((period_end.year - anchor.year) * 12 + (period_end.month - anchor.month) - 1, 0)
        while add_months(anchor, n) < period_end:
            n += 1
        if add_months(anchor, n) == period_end:
            return period_end, add_months(anchor, n + 1)
    return period_end, add_month(period_end)


async def fee_percent(session: AsyncSession, api_id: str) -> int:
    """The platform's share for an API: the API's override, else its partner's, else PLATFORM_FEE_PERCENT."""
    row = (await session.execute(select(Api.platform_fee_percent, Partner.platform_fee_percent)
                                 .join(Partner, Partner.id == Api.partner_id).where(Api.id == api_id))).first()
    if row is not None and row[0] is not None:
        return int(row[0])
    if row is not None and row[1] is not None:
        return int(row[1])
    return get_settings().platform_fee_percent


async def terms_for(session: AsyncSession, plan_version_id: str) -> Terms:
    version = await session.get(PlanVersion, plan_version_id)
    if version is None:
        raise NotFound(f"No plan version {plan_version_id!r}.")
    return Terms.from_plan_version(version)


@dataclass(frozen=True)
class PeriodRating:
    terms: Terms
    rating: Rating
    lines: tuple[FeeLine, ...]  # fee segments (prorated) + usage lines

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def _days(start: datetime, end: datetime) -> int:
    return max(0, (end.date() - start.date()).days)


async def rate_period(session: AsyncSession, sub: Subscription, start: datetime, end: datetime,
                      *, until: datetime | None = None) -> PeriodRating:
    """Rate `sub` for [start, end). Usage is read up to `until` (default `end`: previews pass now)."""
    terms = await terms_for(session, sub.plan_version_id)
    used = await usage_source.usage_for_period(session, sub.id, start, until or end)
    rating = rate(terms, used)
    changes: Sequence[PlanChange] = (await session.scalars(
        select(PlanChange).where(PlanChange.subscription_id == sub.id, PlanChange.changed_at > start,
                                 PlanChange.changed_at < end).order_by(PlanChange.changed_at))).all()
    if not changes:
        return PeriodRating(terms, rating, rating.lines)
    # Prorate the monthly fee by day over the plan segments; usage is rated with the final plan.
    period_days = _days(start, end) or 1
    bounds = [start, *[c.changed_at for c in changes], end]
    versions = [changes[0].from_plan_version_id, *[c.to_plan_version_id for c in changes]]
    fee_lines: list[FeeLine] = []
    for seg_start, seg_end, version_id in zip(bounds[:-1], bounds[1:], versions, strict=True):
        seg_terms = await terms_for(session, version_id)
        days = _days(seg_start, seg_end)
        if not seg_terms.monthly_fee or days == 0:
            continue
        seg = rate(seg_terms, [], fee_fraction=Decimal(days) / Decimal(period_days),
                   fee_description=f"{seg_terms.name or 'Plan'} — monthly fee, {days} of {period_days} days")
        fee_lines.extend(seg.lines)
    usage_lines = tuple(line for line in rating.lines if line.kind != "plan_fee")
    return PeriodRating(terms, rating, (*fee_lines, *usage_lines))


async def record_plan_change(session: AsyncSession, subscription_id: str, from_plan_version_id: str,
                             to_plan_version_id: str, at: datetime | None = None) -> None:
    """Called by the subscriptions domain when a subscription changes plan mid-period (for proration)."""
    session.add(PlanChange(id=f"pc_{str(ULID()).lower()}", subscription_id=subscription_id,
                           from_plan_version_id=from_plan_version_id, to_plan_version_id=to_plan_version_id,
                           changed_at=at or utcnow()))


def _late_usage_line(previous: Invoice, used: Sequence[EndpointUsage]) -> FeeLine | None:
    units = sum(u.units for u in used)
    if units <= previous.usage_units:
        return None
    amount = max(0, rate(Terms.from_snapshot(previous.terms), used).usage_amount - previous.usage_amount)
    late = units - previous.usage_units
    return FeeLine(kind="late_usage", amount=amount, quantity=late,
                   description=f"Late usage for {previous.period_start.date()} - {previous.period_end.date()} "
                               f"(invoice #{previous.number}): {late} units")


async def fee_percents(session: AsyncSession, api_ids: Iterable[str]) -> dict[str, int]:
    default = get_settings().platform_fee_percent
    rows = await session.execute(select(Api.id, Api.platform_fee_percent, Partner.platform_fee_percent)
                                 .join(Partner, Partner.id == Api.partner_id).where(Api.id.in_(set(api_ids))))
    return {a: int(x if x is not None else y if y is not None else default) for a, x, y in rows}


async def close_subscriptions(session: AsyncSession, subs: Sequence[Subscription]) -> list[Invoice]:
    """Invoice each subscription's current period and roll it, in a few statements for the whole batch.
    Returns the invoices created (a period invoiced before is skipped, but the subscription still rolls)."""
    if not subs:
        return []
    ids = [s.id for s in subs]
    versions = {v.id: Terms.from_plan_version(v) for v in (await session.scalars(
        select(PlanVersion).where(PlanVersion.id.in_({s.plan_version_id for s in subs})))).all()}
    percents = await fee_percents(session, {s.api_id for s in subs})
    changed = set((await session.scalars(
        select(PlanChange.subscription_id).join(Subscription, Subscription.id == PlanChange.subscription_id)
        .where(PlanChange.subscription_id.in_(ids), PlanChange.changed_at > Subscription.current_period_start,
               PlanChange.changed_at < Subscription.current_period_end).distinct())).all())
    starts = {s.id: s.current_period_start for s in subs}
    previous = {inv.subscription_id: inv for inv in (await session.scalars(select(Invoice).where(
        Invoice.subscription_id.in_(ids), Invoice.status != "void",
        Invoice.period_end.in_(set(starts.values()))))).all() if inv.period_end == starts[inv.subscription_id]}
    used = await usage_source.usage_for_periods(
        session, [(s.id, s.current_period_start, s.current_period_end) for s in subs if s.id not in changed])
    late_used = await usage_source.usage_for_periods(
        session, [(p.subscription_id, p.period_start, p.period_end) for p in previous.values()])
    now = utcnow()
    drafts: list[dict[str, Any]] = []
    lines_by_sub: dict[str, list[FeeLine]] = {}
    for sub in subs:
        if sub.id in changed:  # rare: prorated segments, rated one by one
            period = await rate_period(session, sub, sub.current_period_start, sub.current_period_end)
            terms, rating, lines = period.terms, period.rating, list(period.lines)
        else:
            terms = versions[sub.plan_version_id]
            rating = rate(terms, used[sub.id], fee_fraction=_final_period_fraction(sub))
            lines = list(rating.lines)
        if sub.id in previous:
            late = _late_usage_line(previous[sub.id], late_used.get(sub.id, []))
            if late is not None:
                lines.append(late)
        total = sum(line.amount for line in lines)
        lines_by_sub[sub.id] = lines
        drafts.append({
            "id": new_id("invoice"), "consumer_id": sub.consumer_id, "subscription_id": sub.id,
            "partner_id": sub.partner_id, "api_id": sub.api_id, "plan_version_id": sub.plan_version_id,
            # draft -> open (or paid when nothing is owed) happens inside this transaction
            "status": "open" if total > 0 else "paid", "currency": terms.currency,
            "period_start": sub.current_period_start, "period_end": sub.current_period_end, "total": total,
            "usage_units": rating.units, "usage_amount": rating.usage_amount, "terms": terms.snapshot(),
            "platform_fee_percent": percents.get(sub.api_id, get_settings().platform_fee_percent),
            "platform_fee_amount": 0, "partner_amount": 0, "amount_refunded": 0, "amount_disputed": 0,
            "attempt_count": 0, "finalized_at": now, "paid_at": now if total == 0 else None,
            "created_at": now, "updated_at": now})
    # executemany with RETURNING: one cached statement, sent in batches (SQLAlchemy's insertmanyvalues)
    rows = await session.execute(insert(Invoice).on_conflict_do_nothing(index_elements=["subscription_id", "period_start"])
                                 .returning(Invoice.id, Invoice.number), drafts)
    created: dict[str, int] = {i: int(n) for i, n in rows}
    fresh = [d for d in drafts if d["id"] in created]
    line_rows = [{"id": new_id("invoice_line"), "invoice_id": d["id"], "position": i, "kind": line.kind,
                  "description": line.description, "quantity": line.quantity, "calls": line.calls,
                  "amount": line.amount, "endpoint_id": line.endpoint_id, "method": line.method, "path": line.path,
                  "period_start": d["period_start"], "period_end": d["period_end"]}
                 for d in fresh for i, line in enumerate(lines_by_sub[d["subscription_id"]])]
    if line_rows:
        await session.execute(insert(InvoiceLine), line_rows)
    await ledger.post_many(session, [ledger.invoice_finalized(
        invoice_id=d["id"], consumer_id=d["consumer_id"], partner_id=d["partner_id"], currency=d["currency"],
        total=d["total"], at=now) for d in fresh if d["total"] > 0])
    events = []
    for d in fresh:
        data = {"id": d["id"], "number": created[d["id"]], "subscription_id": d["subscription_id"],
                "status": d["status"], "total": d["total"], "currency": d["currency"],
                "period_start": d["period_start"].isoformat(), "period_end": d["period_end"].isoformat()}
        events.append({"id": new_id("event"), "type": "invoice.finalized", "data": data, "partner_id": None,
                       "consumer_id": d["consumer_id"], "created_at": now})
        if d["status"] == "paid":
            events.append({"id": new_id("event"), "type": "invoice.paid", "data": data, "partner_id": None,
                           "consumer_id": d["consumer_id"], "created_at": now})
    events.extend(_roll(session, sub) for sub in subs if sub.status != "canceled")  # a final period: nothing to roll
    await session.execute(insert(Event), events)
    await _reset_budgets(session, subs)
    if not fresh:
        return []
    return list((await session.scalars(select(Invoice).where(Invoice.id.in_([d["id"] for d in fresh])))).all())


def _final_period_fraction(sub: Subscription) -> Decimal:
    """The share of the monthly fee owed for a period cut short by a cancellation (days used / days
    in the period, at least one day); 1 for a full period."""
    if sub.status != "canceled":
        return Decimal(1)
    _, nominal_end = next_period(sub.created_at, sub.current_period_start)
    if sub.current_period_end >= nominal_end:
        return Decimal(1)
    full = _days(sub.current_period_start, nominal_end) or 1
    used = min(full, max(1, _days(sub.current_period_start, sub.current_period_end)))
    return Decimal(used) / Decimal(full)


async def _reset_budgets(session: AsyncSession, subs: Sequence[Subscription]) -> None:
    """A new period: budget alerts may fire again and a hard cap is lifted (the block key is synced
    after the commit by `close_all`, see `session.info["unblock"]`)."""
    starts = {s.id: s.current_period_start for s in subs}
    budgets = (await session.scalars(select(Budget).where(Budget.subscription_id.in_(list(starts))))).all()
    for budget in budgets:
        if budget.capped:
            session.info.setdefault("unblock", set()).add(budget.subscription_id)
        budget.period_start, budget.notified_thresholds, budget.capped = starts[budget.subscription_id], [], False


async def close_subscription(session: AsyncSession, sub: Subscription) -> Invoice | None:
    """Invoice `sub`'s current period and roll it; None if that period was already invoiced."""
    created = await close_subscriptions(session, [sub])
    return created[0] if created else None


def invoice_event(invoice: Invoice) -> dict[str, object]:
    return {"id": invoice.id, "number": invoice.number, "subscription_id": invoice.subscription_id,
            "status": invoice.status, "total": invoice.total, "currency": invoice.currency,
            "period_start": invoice.period_start.isoformat(), "period_end": invoice.period_end.isoformat()}


def _roll(session: AsyncSession, sub: Subscription) -> dict[str, Any]:
    """Roll `sub` to its next period (or end it); returns the outbox row that says so."""
    from marketplace.subscriptions.service import subscription_event

    if sub.cancel_at_period_end:
        sub.status, sub.canceled_at = "canceled", utcnow()
        event_type, data = "subscription.canceled", subscription_event(sub)
    else:
        sub.current_period_start, sub.current_period_end = next_period(sub.created_at, sub.current_period_end)
        event_type, data = "subscription.updated", subscription_event(sub, renewed=True)
    sub.revision += 1
    cache.invalidate_after_commit(session, "subscription", sub.id)
    return {"id": new_id("event"), "type": event_type, "data": data, "partner_id": sub.partner_id,
            "consumer_id": sub.consumer_id, "created_at": utcnow()}


async def close_due(session: AsyncSession, period_end: datetime, *, batch: int = 500) -> list[str]:
    """Close one batch of subscriptions whose period ended by `period_end`; returns the new invoice ids.

    Call repeatedly (each call in its own transaction) until fewer than `batch` subscriptions were
    due; `close_all` does that. SKIP LOCKED lets several closers share the work."""
    # Live subscriptions whose period ended, and subscriptions cancelled at once (DELETE ?now=true)
    # whose final, cut-short period has no invoice yet: cancelling must not make a period free.
    final_period_invoiced = select(Invoice.id).where(Invoice.subscription_id == Subscription.id,
                                                     Invoice.period_start == Subscription.current_period_start).exists()
    subs = (await session.scalars(
        select(Subscription).where(or_(Subscription.status != "canceled", ~final_period_invoiced),
                                   Subscription.current_period_end <= period_end)
        .order_by(Subscription.current_period_end, Subscription.id).limit(batch).with_for_update(skip_locked=True)
    )).all()
    session.info["closed_count"] = len(subs)
    return [invoice.id for invoice in await close_subscriptions(session, subs)]


async def close_all(sessionmaker: Any, period_end: datetime, *, batch: int = 500,
                    redis: Any = None) -> tuple[int, list[str]]:
    """Close every due subscription, one transaction per batch. Returns (subscriptions closed, open invoice ids).
    With `redis`, budget hard caps lifted by the new period are removed from the gateway at once."""
    from marketplace.billing.payments import sync_block

    closed = 0
    to_charge: list[str] = []
    while True:
        async with sessionmaker.begin() as session:
            created = await close_due(session, period_end, batch=batch)
            count = session.info.get("closed_count", 0)
            unblock = session.info.pop("unblock", set())
            if created:
                to_charge.extend((await session.scalars(
                    select(Invoice.id).where(Invoice.id.in_(created), Invoice.status == "open"))).all())
        if redis is not None and unblock:
            async with sessionmaker() as session:
                for subscription_id in unblock:
                    await sync_block(session, redis, subscription_id)
        closed += count
        if count < batch:
            return closed, to_charge


async def void_invoice(session: AsyncSession, invoice: Invoice) -> None:
    if invoice.status not in ("open", "failed"):
        return
    await ledger.post_invoice_voided(session, invoice_id=invoice.id, consumer_id=invoice.consumer_id,
                                     partner_id=invoice.partner_id, currency=invoice.currency, total=invoice.total)
    await session.execute(update(Invoice).where(Invoice.id == invoice.id).values(
        status="void", voided_at=utcnow(), next_attempt_at=None))
