"""What each page shows, gathered from the domains' services (read-only, no business rules):
the portal's only job is to put their answers side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing import budgets as billing_budgets
from marketplace.billing import payments as billing_payments
from marketplace.billing import readside as billing_readside
from marketplace.billing import service as billing
from marketplace.billing.models import Budget, Invoice
from marketplace.billing.rating import PricingError, Terms, quote
from marketplace.billing.schemas import EarningsOut
from marketplace.catalog import service as catalog
from marketplace.core.db import utcnow
from marketplace.core.security import Principal
from marketplace.gateway import service as gateway
from marketplace.metering import service as metering
from marketplace.portal.charts import Chart, daily_chart, period_chart
from marketplace.subscriptions import service as subscriptions
from marketplace.subscriptions.models import ApiKey, Subscription
from marketplace.subscriptions.periods import add_months, period_containing
from oauth import service as oauth
from oauth.models import OAuthApp, OAuthGrant
from partners import service as partners
from partners.models import Partner
from partners.publishing import service as publishing
from partners.publishing.models import Api, PlanVersion
from payouts import service as payouts
from payouts.models import PayoutLine
from webhooks import service as webhooks
from webhooks.models import WebhookAttempt, WebhookEndpoint

ZERO_DECIMAL = {"jpy", "krw"}


def money(amount: int | None, currency: str) -> str:
    """Integer minor units for display: 4900 usd → "USD 49.00" (JPY has no minor unit)."""
    amount = int(amount or 0)
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{code} {amount:,}"
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 100)
    return f"{sign}{code} {major:,}.{minor:02d}"


def unit_amount(value: Any, currency: str) -> str:
    """A unit price in decimal minor units ("0.1" usd) in major units: "USD 0.001"."""
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return f"{value} {currency.upper()} minor units"
    major = amount if currency.lower() in ZERO_DECIMAL else amount / 100
    text = format(major.normalize(), "f")
    if "." not in text and currency.lower() not in ZERO_DECIMAL:
        text += ".00"
    elif "." in text and len(text.split(".")[1]) == 1:
        text += "0"
    return f"{currency.upper()} {text}"


def unit_price(pricing: dict[str, Any] | None, currency: str) -> list[str]:
    """Human lines for a plan's `unit_pricing` (stored as decimal minor units)."""
    if not pricing:
        return ["No usage charge"]
    model = pricing.get("model")
    if model == "per_unit":
        return [f"{unit_amount(pricing.get('unit_amount'), currency)} per unit"]
    if model == "package":
        size = pricing.get("package_size") or pricing.get("size")
        return [f"{unit_amount(pricing.get('package_amount') or pricing.get('unit_amount'), currency)} "
                f"per {int(size or 1):,} units (whole packages)"]
    lines = ["Tiered, each unit at its tier's price:" if model == "graduated"
             else "By volume, every unit at the price of the tier reached:"]
    lower = 0
    for tier in pricing.get("tiers") or []:
        upper = tier.get("up_to")
        span = f"{lower + 1:,}–{int(upper):,}" if upper is not None else f"above {lower:,}"
        lines.append(f"{span}: {unit_amount(tier.get('unit_amount'), currency)} per unit")
        lower = int(upper) if upper is not None else lower
    return lines


def plan_quote(version: PlanVersion, units: int) -> int | None:
    """The rating engine's price of a month with `units` units (None: the pricing cannot be rated)."""
    try:
        return quote(Terms.from_plan_version(version), units).total
    except PricingError:
        return None


def parse_amount(text: str, currency: str) -> int | None:
    """A budget typed in major units ("50", "49.99") → integer minor units; None when not a sane amount."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.replace(",", "").strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value <= 0 or value > Decimal(10) ** 12:
        return None
    minor = value if currency.lower() in ZERO_DECIMAL else value * 100
    return int(minor) if minor == int(minor) else None


# --- consumer dashboard ---------------------------------------------------------------------

@dataclass
class SubscriptionView:
    sub: Subscription
    plan: PlanVersion
    api: Api
    period: tuple[datetime, datetime]
    calls: int
    units: int
    estimate: int
    chart: Chart
    by_endpoint: list[metering.EndpointUsage]
    budget: Budget | None = None

    @property
    def quota_percent(self) -> int | None:
        limit = self.plan.quota_limit
        return None if not limit else min(100, self.units * 100 // int(limit))

    @property
    def included_percent(self) -> int | None:
        inc = self.plan.included_units
        return None if not inc else min(100, self.units * 100 // int(inc))


@dataclass
class EndpointView:
    endpoint: WebhookEndpoint
    attempts: list[WebhookAttempt]


@dataclass
class Dashboard:
    subscriptions: list[SubscriptionView]
    keys: list[tuple[ApiKey, str]]  # (key, API name)
    apps: list[OAuthApp]
    grants: list[tuple[OAuthGrant, str]]  # (grant, app name)
    webhooks: list[EndpointView]
    partners: list[tuple[Partner, str]]
    invoices: list[tuple[Invoice, str]]  # (invoice, API name)
    has_payment_method: bool
    estimates: dict[str, int] = field(default_factory=dict)  # currency → estimated bill


def current_period(sub: Subscription, now: datetime) -> tuple[datetime, datetime]:
    start, end = sub.current_period_start, sub.current_period_end
    if now >= end and sub.status != "canceled":
        start, end = period_containing(sub.created_at, now)
    return start, end


async def subscription_view(session: AsyncSession, sub: Subscription, plan: PlanVersion, api: Api,
                            now: datetime) -> SubscriptionView:
    start, end = current_period(sub, now)
    prev = (add_months(start, -1), start)
    rows = await metering.usage_for_period(session, sub.id, start, end)
    units = sum(r.units for r in rows)
    current = await metering.daily_usage(session, sub.id, start, end)
    previous = await metering.daily_usage(session, sub.id, *prev)
    chart = period_chart(f"usage-{sub.id}", f"{api.name}: units per day", "units", current, previous,
                         (start, end), prev)
    # The invoice this period would produce if it closed now (the rating engine, prorations included).
    try:
        estimate = (await billing.rate_period(session, sub, sub.current_period_start, sub.current_period_end,
                                              until=now)).total
    except PricingError:
        estimate = 0
    budget = await session.scalar(select(Budget).where(Budget.subscription_id == sub.id))
    return SubscriptionView(sub=sub, plan=plan, api=api, period=(start, end), calls=sum(r.calls for r in rows),
                            units=units, estimate=estimate, chart=chart, by_endpoint=rows, budget=budget)


async def endpoint_views(session: AsyncSession, endpoints: list[WebhookEndpoint]) -> list[EndpointView]:
    views = []
    for endpoint in endpoints:
        page = await webhooks.list_attempts(session, endpoint, status=None, event_type=None, limit=10,
                                            starting_after=None)
        views.append(EndpointView(endpoint, page.data))
    return views


async def dashboard(session: AsyncSession, principal: Principal) -> Dashboard:
    now = utcnow()
    subs = [await subscription_view(session, s, v, a, now)
            for s, v, a in await subscriptions.list_with_plans(session, principal.user_id)]
    api_names = {v.sub.id: v.api.name for v in subs}
    keys = [(k, api_names.get(k.subscription_id, "")) for k in await subscriptions.list_keys(session, principal.user_id)]
    apps = list((await session.scalars(oauth.apps_of(principal.user_id).order_by(OAuthApp.id.desc()))).all())
    grants = list((await session.scalars(oauth.grants_of(principal.user_id).order_by(OAuthGrant.id.desc()))).all())
    names = await oauth.app_names(session, {g.app_id for g in grants})
    page = await webhooks.list_endpoints(session, principal, partner_id=None, limit=50, starting_after=None)
    own = [e for e in page.data if e.consumer_id == principal.user_id]
    estimates: dict[str, int] = {}
    for view in subs:
        estimates[view.plan.currency] = estimates.get(view.plan.currency, 0) + view.estimate
    invoices = list(await billing_readside.invoices_of(session, principal.user_id))
    invoice_apis = {i.api_id for i in invoices} - {v.api.id for v in subs}
    api_names_by_id = {v.api.id: v.api.name for v in subs}
    if invoice_apis:
        api_names_by_id.update(dict((await session.execute(select(Api.id, Api.name).where(Api.id.in_(invoice_apis)))).tuples().all()))
    return Dashboard(subscriptions=subs, keys=keys, apps=apps, grants=[(g, names.get(g.app_id, g.app_id)) for g in grants],
                     webhooks=await endpoint_views(session, own),
                     partners=await partners.list_partners(session, principal),
                     invoices=[(i, api_names_by_id.get(i.api_id, "")) for i in invoices],
                     has_payment_method=await billing_payments.has_payment_method(session, principal.user_id),
                     estimates=estimates)


async def set_budget(session: AsyncSession, redis: Redis, consumer_id: str, subscription_id: str, *,
                     amount_text: str, hard_cap: bool) -> Budget:
    """The dashboard's budget form → billing's budget rules (amount typed in major units)."""
    from marketplace.core.errors import Unprocessable

    sub = await billing_budgets.own_subscription(session, consumer_id, subscription_id)
    terms = await billing.terms_for(session, sub.plan_version_id)
    amount = parse_amount(amount_text, terms.currency)
    if amount is None:
        raise Unprocessable(f"Enter the budget as an amount in {terms.currency.upper()}, like 50 or 49.99.")
    budget = await billing_budgets.set_budget(session, sub, monthly_amount=amount, currency=terms.currency,
                                              alert_thresholds=None, hard_cap=hard_cap)
    await billing_budgets.evaluate(session, redis, budget, sub)
    return budget


# --- partner dashboard ----------------------------------------------------------------------

@dataclass
class ApiView:
    api: Api
    plans: list[tuple[str, str, int]]  # (plan id, name, live subscribers)
    chart: Chart
    calls_30d: int
    units_30d: int
    health_24h: Health


@dataclass
class PartnerDashboard:
    partner: Partner
    role: str
    apis: list[ApiView]
    webhooks: list[EndpointView]
    earnings: EarningsOut
    balances: list[payouts.PartnerBalance]
    payouts: list[PayoutLine]


async def partner_dashboard(session: AsyncSession, principal: Principal, partner_id: str) -> PartnerDashboard:
    partner, role = await partners.require_member(session, principal, partner_id)
    now = utcnow()
    page = await publishing.list_apis(session, principal, partner_id=partner.id, status=None, limit=100,
                                      starting_after=None, to_schema=lambda api: api)
    apis: list[Api] = page.data
    per_plan = await subscriptions.subscribers_per_plan(session, partner.id)
    start = (now - timedelta(days=29)).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = await metering.partner_usage(session, partner.id, api_id=None, group_by="day", start=start,
                                         end=now + timedelta(hours=1))
    outcomes = await health(session, [a.id for a in apis], now - timedelta(hours=24))
    views = []
    for api in apis:
        rows = sorted((r["day"], r["calls"], r["units"]) for r in daily if r["api_id"] == api.id)
        chart = daily_chart(f"calls-{api.id}", f"{api.name}: calls per day, last 30 days", "calls", rows,
                            start, now + timedelta(hours=1))
        views.append(ApiView(api=api, plans=[(p, n, c) for a, p, n, c in per_plan if a == api.id], chart=chart,
                             calls_30d=sum(r[1] for r in rows), units_30d=sum(r[2] for r in rows),
                             health_24h=outcomes[api.id]))
    endpoints = await webhooks.list_endpoints(session, principal, partner_id=partner.id, limit=50, starting_after=None)
    return PartnerDashboard(partner=partner, role=role, apis=views,
                            webhooks=await endpoint_views(session, list(endpoints.data)),
                            earnings=await billing_readside.earnings(session, partner.id),
                            balances=await payouts.partner_balance(session, partner.id),
                            payouts=await payouts.partner_lines(session, partner.id))


# --- API health (status page, partner dashboard) --------------------------------------------

@dataclass(frozen=True)
class Health:
    calls: int
    errors: int
    availability: float | None
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return None if not self.calls else self.errors / self.calls


async def health(session: AsyncSession, api_ids: list[str], since: datetime) -> dict[str, Health]:
    """Calls, errors, availability and latency percentiles per API, as the gateway measured them."""
    out = {}
    for api_id in api_ids:
        st = await gateway.api_status(session, api_id, since)
        out[api_id] = Health(st.calls, st.errors, st.availability, st.p50_ms, st.p95_ms)
    return out


@dataclass
class StatusRow:
    api: Api
    day: Health
    month: Health


async def status_rows(session: AsyncSession) -> list[StatusRow]:
    page = await catalog.search(session, q=None, category=None, tag=None, limit=100, starting_after=None)
    apis = sorted((api for api, _ in page.data), key=lambda a: a.name.lower())
    now = utcnow()
    ids = [a.id for a in apis]
    day = await health(session, ids, now - timedelta(hours=24))
    month = await health(session, ids, now - timedelta(days=30))
    return [StatusRow(a, day[a.id], month[a.id]) for a in apis]


# --- /metrics -------------------------------------------------------------------------------

async def operational_gauges(session: AsyncSession, redis: Redis) -> dict[str, float]:
    pending, failed = await webhooks.queue_stats(session)
    return {"usage_flush_lag_seconds": await metering.flush_lag_seconds(redis),
            "webhook_queue_depth": float(pending), "webhook_failed_attempts_last_hour": float(failed)}

