"""Payout batches, their lines, and the claims that tie ledger transactions to lines.

A line claims the partner-payable ledger transactions behind it (`payout_claims`, unique per
transaction): two batches can never pay the same earnings. Carried-over lines claim nothing (the
next batch picks the same earnings up again); a failed line gives its claims back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin

# Batch: pending_review → (awaiting_second_approval →) approved
BATCH_STATUSES = ("pending_review", "awaiting_second_approval", "approved")
# Line: pending_review ↔ held; pending_review → approved → sending → paid | failed; paid → reversed;
# carried_over is final (recorded with its reason, never paid; the next batch picks the amount up).
LINE_STATUSES = ("pending_review", "held", "approved", "sending", "paid", "failed", "reversed", "carried_over")


class PayoutBatch(IdMixin, TimestampMixin, Base):
    __tablename__ = "payout_batches"

    period_end: Mapped[datetime]
    cutoff: Mapped[datetime]  # min(period_end, created - PAYOUT_HOLDING_DAYS): invoices paid by then
    status: Mapped[str] = mapped_column(String(32), default="pending_review")
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    approved_by: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    reconciled_at: Mapped[datetime | None] = mapped_column(default=None)
    reconciliation: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)


class PayoutLine(IdMixin, TimestampMixin, Base):
    __tablename__ = "payout_lines"
    __table_args__ = (
        Index("ix_payout_lines_batch", "batch_id", "id"),
        Index("ix_payout_lines_partner", "partner_id", "id"),
    )

    batch_id: Mapped[str] = mapped_column(ForeignKey("payout_batches.id", ondelete="CASCADE"))
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column(BigInteger)  # what consumers paid, net of refunds/disputes
    platform_fee: Mapped[int] = mapped_column(BigInteger)  # our part of it
    amount: Mapped[int] = mapped_column(BigInteger)  # the partner's: gross - platform_fee
    status: Mapped[str] = mapped_column(String(16), default="pending_review")
    reason: Mapped[str | None] = mapped_column(Text, default=None)  # why held / carried over / failed
    invoice_ids: Mapped[list[str]] = mapped_column(JSONB, default=list)
    destination: Mapped[str | None] = mapped_column(String(64), default=None)  # the Stripe account paid
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    amount_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    held_by: Mapped[str | None] = mapped_column(String(40), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    reversed_at: Mapped[datetime | None] = mapped_column(default=None)


class PayoutClaim(Base):
    """A ledger transaction on a partner's payable, claimed by one payout line (at most one)."""

    __tablename__ = "payout_claims"

    ledger_transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), primary_key=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("payout_lines.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
