"""Billing over HTTP: payment setup, Stripe webhooks in, invoices, previews and quotes, budgets,
earnings, operator close and metrics. Thin: the rules live in service/payments/budgets/readside."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.status_codes import HTTP_200_OK
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing import budgets, payments, readside, service, stripe_events
from marketplace.billing.models import BillingCustomer, Invoice
from marketplace.billing.rating import FeeLine, PricingError, Terms, quote
from marketplace.billing.schemas import (
    BudgetIn,
    BudgetOut,
    CloseIn,
    CloseOut,
    EarningsOut,
    InvoiceOut,
    LineOut,
    MetricsOut,
    PaymentMethodOut,
    PreviewOut,
    QuoteIn,
    QuoteOut,
    SetupOut,
)
from marketplace.core.auth import require_operator
from marketplace.core.db import utcnow
from marketplace.core.errors import NotFound, Unprocessable
from marketplace.core.pagination import Page, paginate
from marketplace.core.security import Principal
from marketplace.core.tenancy import partner_role
from marketplace.settings import get_settings
from partners.publishing.models import Api, Plan, PlanVersion


def line_out(line: FeeLine) -> LineOut:
    return LineOut(kind=line.kind, description=line.description, amount=line.amount, quantity=line.quantity,
                   calls=line.calls, endpoint_id=line.endpoint_id, method=line.method, path=line.path)


class BillingController(Controller):
    path = "/v1/billing"
    tags = ["billing"]

    @post("/setup", status_code=HTTP_200_OK, operation_id="billingSetup",
          summary="Save a payment method: a Stripe Checkout Session in setup mode")
    async def setup(self, principal: Principal, db_session: AsyncSession) -> SetupOut:
        return SetupOut(checkout_url=await payments.setup_checkout_url(db_session, principal.user_id, principal.email))

    @get("/payment-method", operation_id="billingPaymentMethod",
         summary="Whether you have a default payment method (save one with POST /v1/billing/setup)")
    async def payment_method(self, principal: Principal, db_session: AsyncSession) -> PaymentMethodOut:
        row = await db_session.get(BillingCustomer, principal.user_id)
        method = row.default_payment_method if row else None
        return PaymentMethodOut(has_payment_method=bool(method), payment_method=method,
                                payments_enabled=get_settings().payments_enabled)


class StripeWebhookController(Controller):
    path = "/v1/stripe"
    tags = ["billing"]

    @post("/webhook", status_code=HTTP_200_OK, operation_id="stripeWebhook", security=[],
          summary="Stripe events in (Stripe-Signature verified; each event handled once)")
    async def webhook(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> dict[str, Any]:
        event = stripe_events.verify(await request.body(), request.headers.get("stripe-signature"))
        new = await stripe_events.store(db_session, event)
        await db_session.commit()  # the job must see the row
        if new:
            await request.app.state.arq.enqueue_job("handle_stripe_event", event["id"], _job_id=f"stripe-{event['id']}")
        return {"received": True, "duplicate": not new}


class InvoiceController(Controller):
    path = "/v1/invoices"
    tags = ["billing"]

    @get("/", operation_id="listInvoices", summary="Your invoices, newest first")
    async def list_invoices(self, principal: Principal, db_session: AsyncSession, limit: int | None = None,
                            starting_after: str | None = None, status: str | None = None,
                            subscription_id: str | None = None) -> Page[InvoiceOut]:
        stmt = select(Invoice).where(Invoice.consumer_id == principal.user_id)
        if status:
            stmt = stmt.where(Invoice.status == status)
        if subscription_id:
            stmt = stmt.where(Invoice.subscription_id == subscription_id)
        return await paginate(db_session, stmt, Invoice.id, limit=limit, starting_after=starting_after,
                              to_schema=lambda inv: readside.invoice_out(inv, None))

    @get("/{invoice_id:str}", operation_id="getInvoice", summary="One of your invoices, with its lines")
    async def get_invoice(self, invoice_id: str, principal: Principal, db_session: AsyncSession) -> InvoiceOut:
        invoice = await db_session.get(Invoice, invoice_id)
        if invoice is None or invoice.consumer_id != principal.user_id:
            raise NotFound(f"No invoice {invoice_id!r} of yours. List yours with GET /v1/invoices.")
        return readside.invoice_out(invoice, await readside.invoice_lines(db_session, invoice.id))


class SubscriptionBillingController(Controller):
    path = "/v1/subscriptions/{subscription_id:str}"
    tags = ["billing"]

    @get("/preview-invoice", operation_id="previewInvoice",
         summary="The invoice the current period would produce if it closed now")
    async def preview(self, subscription_id: str, principal: Principal, db_session: AsyncSession) -> PreviewOut:
        sub = await budgets.own_subscription(db_session, principal.user_id, subscription_id)
        period = await service.rate_period(db_session, sub, sub.current_period_start, sub.current_period_end,
                                           until=utcnow())
        r = period.rating
        return PreviewOut(subscription_id=sub.id, currency=period.terms.currency, period_start=sub.current_period_start,
                          period_end=sub.current_period_end, units=r.units, included_units=r.included_units,
                          billable_units=r.billable_units, over_quota_units=r.over_quota_units,
                          lines=[line_out(line) for line in period.lines], total=period.total)

    @put("/budget", operation_id="setBudget", summary="Set the monthly budget, alert thresholds and hard cap")
    async def set_budget(self, subscription_id: str, data: BudgetIn, principal: Principal, request: Request[Any, Any, Any],
                         db_session: AsyncSession) -> BudgetOut:
        sub = await budgets.own_subscription(db_session, principal.user_id, subscription_id)
        budget = await budgets.set_budget(db_session, sub, monthly_amount=data.monthly_amount, currency=data.currency,
                                          alert_thresholds=data.alert_thresholds, hard_cap=data.hard_cap)
        estimate = await budgets.evaluate(db_session, request.app.state.redis, budget, sub)
        return readside.budget_out(budget, estimate)

    @get("/budget", operation_id="getBudget", summary="The subscription's budget and this period's estimate")
    async def get_budget(self, subscription_id: str, principal: Principal, db_session: AsyncSession) -> BudgetOut:
        from marketplace.billing.models import Budget

        sub = await budgets.own_subscription(db_session, principal.user_id, subscription_id)
        budget = await db_session.scalar(select(Budget).where(Budget.subscription_id == sub.id))
        if budget is None:
            raise NotFound("This subscription has no budget. Set one with PUT /v1/subscriptions/{id}/budget.")
        return readside.budget_out(budget, budget.last_estimate)


class QuoteController(Controller):
    path = "/v1/catalog/plans"
    tags = ["catalog"]

    @post("/{plan_id:str}/quote", status_code=HTTP_200_OK, operation_id="quotePlan", security=[],
          summary="Price calculator: what a month with this many units costs on a plan (no auth)")
    async def quote_plan(self, plan_id: str, data: QuoteIn, db_session: AsyncSession) -> QuoteOut:
        row = (await db_session.execute(
            select(PlanVersion).join(Plan, (Plan.id == PlanVersion.plan_id) & (PlanVersion.version == Plan.current_version))
            .join(Api, Api.id == Plan.api_id)
            .where(Plan.id == plan_id, Plan.status == "active", Api.status == "published"))).scalar_one_or_none()
        if row is None:
            raise NotFound(f"No published plan {plan_id!r}. Find plans with GET /v1/catalog/apis/{{slug}}.")
        try:
            r = quote(Terms.from_plan_version(row), data.units)
        except PricingError as exc:
            raise Unprocessable(f"This plan's pricing cannot be rated: {exc}") from exc
        return QuoteOut(plan_id=plan_id, currency=r.currency, units=r.units, included_units=r.included_units,
                        billable_units=r.billable_units, lines=[line_out(line) for line in r.lines], total=r.total)


class PartnerEarningsController(Controller):
    path = "/v1/partners/{partner_id:str}"
    tags = ["partners"]

    @get("/earnings", operation_id="partnerEarnings", summary="Earnings by API and period (members only)")
    async def earnings(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> EarningsOut:
        await partner_role(db_session, principal, partner_id)
        return await readside.earnings(db_session, partner_id)


class AdminBillingController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post("/billing/close", status_code=HTTP_200_OK, operation_id="closeBillingPeriod",
          summary="Invoice every subscription whose period ended by period_end, then charge the invoices")
    async def close(self, data: CloseIn, principal: Principal, request: Request[Any, Any, Any]) -> CloseOut:
        require_operator(principal)
        if data.period_end.tzinfo is None:
            raise Unprocessable("period_end needs a time zone (use UTC, e.g. 2026-12-01T00:00:00Z).",
                                errors=[{"field": "period_end", "message": "must include a UTC offset"}])
        if data.period_end > utcnow():
            # A period that has not ended cannot be invoiced: closing would bill part of a period
            # (and the fees of periods to come) and roll subscriptions ahead of the calendar.
            raise Unprocessable("period_end is in the future; only periods that have ended can be closed. "
                                "Use a time up to now.",
                                errors=[{"field": "period_end", "message": "must not be in the future"}])
        closed, to_charge = await service.close_all(request.app.state.sessionmaker, data.period_end,
                                                    redis=request.app.state.redis)
        for invoice_id in to_charge:
            await request.app.state.arq.enqueue_job("charge_invoice", invoice_id, _job_id=f"charge-{invoice_id}")
        return CloseOut(period_end=data.period_end, subscriptions_closed=closed, invoices=to_charge,
                        charging=len(to_charge))

    @post("/invoices/{invoice_id:str}/void", status_code=HTTP_200_OK, operation_id="voidInvoice",
          summary="Void an unpaid invoice (it is no longer owed)")
    async def void(self, invoice_id: str, principal: Principal, db_session: AsyncSession) -> InvoiceOut:
        require_operator(principal)
        invoice = await db_session.get(Invoice, invoice_id, with_for_update=True)
        if invoice is None:
            raise NotFound(f"No invoice {invoice_id!r}.")
        if invoice.status not in ("open", "failed"):
            raise Unprocessable(f"Only open or failed invoices can be voided; this one is {invoice.status}.")
        await service.void_invoice(db_session, invoice)
        await db_session.refresh(invoice)
        return readside.invoice_out(invoice, await readside.invoice_lines(db_session, invoice.id))

    @get("/metrics", operation_id="platformMetrics", summary="GMV, platform revenue, MRR, active partners and consumers")
    async def metrics(self, principal: Principal, db_session: AsyncSession) -> MetricsOut:
        require_operator(principal)
        return await readside.metrics(db_session)


def estimate(plan_version: Any, units: int) -> int:
    """The usage endpoint's estimate (metering), answered by the rating engine."""
    terms = Terms.parse(currency=getattr(plan_version, "currency", "usd"),
                        monthly_fee=int(getattr(plan_version, "monthly_fee", 0) or 0),
                        included_units=int(getattr(plan_version, "included_units", 0) or 0),
                        unit_pricing=getattr(plan_version, "unit_pricing", None),
                        quota_limit=getattr(plan_version, "quota_limit", None),
                        quota_hard=bool(getattr(plan_version, "quota_hard", False)))
    return quote(terms, units).total


@contextlib.asynccontextmanager
async def install_estimator(app: Any) -> AsyncIterator[None]:
    from marketplace.metering import pricing

    pricing.set_estimator(estimate)
    try:
        yield
    finally:
        pricing.set_estimator(None)


LIFESPANS = [install_estimator]
ROUTES = [BillingController, StripeWebhookController, InvoiceController, SubscriptionBillingController,
          QuoteController, PartnerEarningsController, AdminBillingController]
