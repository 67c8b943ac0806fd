"""Billing: Stripe customers, invoices and their lines, payment attempts, the Stripe event inbox,
budgets, and plan changes (for proration)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Sequence, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin, utcnow

# draft: being built; open: finalized, awaiting payment; paid; failed: the last charge failed
# (retried; the subscription is past_due/unpaid); void: cancelled by an operator, never owed.
INVOICE_STATUSES = ("draft", "open", "paid", "failed", "void")

invoice_number_seq = Sequence("invoice_number_seq", metadata=Base.metadata)


class BillingCustomer(TimestampMixin, Base):
    """A consumer's Stripe customer and default payment method (one per consumer)."""

    __tablename__ = "billing_customers"

    consumer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    default_payment_method: Mapped[str | None] = mapped_column(String(64), default=None)


class Invoice(IdMixin, TimestampMixin, Base):
    __tablename__ = "invoices"
    __table_args__ = (
        # Closing a period twice creates nothing new.
        UniqueConstraint("subscription_id", "period_start"),
        Index("ix_invoices_consumer_id_id", "consumer_id", "id"),
        Index("ix_invoices_status_retry", "status", "next_attempt_at"),
        Index("ix_invoices_partner_paid", "partner_id", "paid_at"),
    )

    # Sequential, from a PostgreSQL sequence (gaps only where a transaction rolled back).
    number: Mapped[int] = mapped_column(BigInteger, server_default=invoice_number_seq.next_value(), unique=True)
    consumer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"))
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("plan_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    # What this invoice billed for its own period (late usage is detected against these).
    usage_units: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    terms: Mapped[dict[str, Any]] = mapped_column(JSONB)  # snapshot of the plan version's terms
    platform_fee_percent: Mapped[int] = mapped_column(Integer, default=0)
    platform_fee_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # set when paid
    partner_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # set when paid
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_disputed: Mapped[int] = mapped_column(BigInteger, default=0)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    failure_message: Mapped[str | None] = mapped_column(Text, default=None)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    receipt_url: Mapped[str | None] = mapped_column(Text, default=None)
    finalized_at: Mapped[datetime | None] = mapped_column(default=None)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    voided_at: Mapped[datetime | None] = mapped_column(default=None)


class InvoiceLine(IdMixin, Base):
    __tablename__ = "invoice_lines"

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # plan_fee | usage | late_usage
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(BigInteger, default=1)
    calls: Mapped[int | None] = mapped_column(BigInteger, default=None)
    amount: Mapped[int] = mapped_column(BigInteger)
    endpoint_id: Mapped[str | None] = mapped_column(String(40), default=None)
    method: Mapped[str | None] = mapped_column(String(8), default=None)
    path: Mapped[str | None] = mapped_column(String(512), default=None)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]


class PaymentAttempt(IdMixin, Base):
    """One off-session charge of an invoice; its id is the Stripe idempotency key."""

    __tablename__ = "billing_payment_attempts"

    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24), default="pending")  # pending|succeeded|failed|processing
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(Base):
    """The inbox: every Stripe event once, keyed by Stripe's id, handled by a job."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_unprocessed", "received_at", postgresql_where="processed_at IS NULL"),)

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    handled: Mapped[bool] = mapped_column(default=False)  # False: no handler for the type (stored, ignored)


class Budget(IdMixin, TimestampMixin, Base):
    __tablename__ = "billing_budgets"

    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), unique=True)
    consumer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    monthly_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    alert_thresholds: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    hard_cap: Mapped[bool] = mapped_column(default=False)
    # The period the notifications below belong to; reset when the subscription's period rolls.
    period_start: Mapped[datetime | None] = mapped_column(default=None)
    notified_thresholds: Mapped[list[int]] = mapped_column(ARRAY(Integer), default=list)
    capped: Mapped[bool] = mapped_column(default=False)
    last_estimate: Mapped[int] = mapped_column(BigInteger, default=0)


class PlanChange(IdMixin, Base):
    """A mid-period plan change, recorded so the period's fee can be prorated by day."""

    __tablename__ = "billing_plan_changes"
    __table_args__ = (Index("ix_billing_plan_changes_sub_at", "subscription_id", "changed_at"),)

    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    from_plan_version_id: Mapped[str] = mapped_column(ForeignKey("plan_versions.id"))
    to_plan_version_id: Mapped[str] = mapped_column(ForeignKey("plan_versions.id"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
