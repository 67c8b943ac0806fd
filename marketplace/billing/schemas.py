"""Billing request and response types (msgspec). Money: integer minor units + currency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Currency = Annotated[str, msgspec.Meta(pattern="^[a-z]{3}$", examples=["usd"])]


class SetupOut(msgspec.Struct):
    checkout_url: str


class PaymentMethodOut(msgspec.Struct):
    has_payment_method: bool
    payment_method: str | None
    payments_enabled: bool


class QuoteIn(msgspec.Struct, forbid_unknown_fields=True):
    units: Annotated[int, msgspec.Meta(ge=0, le=10**12, examples=[150000])]


class LineOut(msgspec.Struct):
    kind: str
    description: str
    amount: int
    quantity: int
    calls: int | None = None
    endpoint_id: str | None = None
    method: str | None = None
    path: str | None = None


class QuoteOut(msgspec.Struct):
    plan_id: str
    currency: str
    units: int
    included_units: int
    billable_units: int
    lines: list[LineOut]
    total: int


class PreviewOut(msgspec.Struct):
    subscription_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    units: int
    included_units: int
    billable_units: int
    over_quota_units: int
    lines: list[LineOut]
    total: int


class InvoiceLineOut(msgspec.Struct):
    id: str
    kind: str
    description: str
    amount: int
    quantity: int
    calls: int | None
    endpoint_id: str | None
    method: str | None
    path: str | None
    period_start: datetime
    period_end: datetime


class InvoiceOut(msgspec.Struct):
    id: str
    number: int
    status: str
    subscription_id: str
    api_id: str
    currency: str
    total: int
    amount_refunded: int
    amount_disputed: int
    period_start: datetime
    period_end: datetime
    created_at: datetime
    finalized_at: datetime | None
    paid_at: datetime | None
    attempt_count: int
    next_attempt_at: datetime | None
    failure_message: str | None
    receipt_url: str | None
    plan: dict[str, object]
    lines: list[InvoiceLineOut] | None = None


class CloseIn(msgspec.Struct, forbid_unknown_fields=True):
    period_end: Annotated[datetime, msgspec.Meta(examples=["2026-12-01T00:00:00Z"])]


class CloseOut(msgspec.Struct):
    period_end: datetime
    subscriptions_closed: int
    invoices: list[str]
    charging: int


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True):
    monthly_amount: Annotated[int, msgspec.Meta(ge=1, le=10**12, examples=[10000])]
    currency: Currency
    alert_thresholds: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=1000)]],
                                msgspec.Meta(max_length=10, examples=[[50, 80, 100]])] | None = None
    hard_cap: bool = False


class BudgetOut(msgspec.Struct):
    id: str
    subscription_id: str
    monthly_amount: int
    currency: str
    alert_thresholds: list[int]
    hard_cap: bool
    period_start: datetime | None
    notified_thresholds: list[int]
    capped: bool
    estimate: int


class EarningsRow(msgspec.Struct):
    api_id: str
    api_name: str
    period: str  # YYYY-MM of the invoice period start
    currency: str
    gross: int
    platform_fee: int
    partner_share: int
    refunded: int
    invoices: int


class EarningsOut(msgspec.Struct):
    partner_id: str
    data: list[EarningsRow]
    payable: dict[str, int]  # the partner payable ledger balance by currency


class CurrencyMetrics(msgspec.Struct):
    currency: str
    gmv: int  # paid invoice totals
    platform_revenue: int  # platform fee, net of refunds and disputes (ledger)
    mrr: int  # monthly fees of live subscriptions


class MetricsOut(msgspec.Struct):
    by_currency: list[CurrencyMetrics]
    active_partners: int
    active_consumers: int
    live_subscriptions: int
    open_invoices: int
    failed_invoices: int
