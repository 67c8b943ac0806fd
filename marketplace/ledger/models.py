"""The double-entry ledger: accounts per currency, transactions of immutable, balanced entries.

Sign convention: an entry's `amount` is signed, debit positive, credit negative, in minor units.
Every transaction's entries sum to zero (checked by `service.post` and, at commit, by a deferred
constraint trigger), so all balances together sum to zero per currency. Entries are never
updated or deleted (a trigger refuses it); a correction is a new, reversing transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, utcnow

# Account kinds. `owner_id` is "" for the platform's own accounts.
CONSUMER_RECEIVABLE = "consumer_receivable"  # owner: consumer (user) id; what a consumer owes us
DEFERRED_REVENUE = "invoiced_unpaid"  # platform: invoiced but not collected yet
STRIPE_CLEARING = "stripe_clearing"  # platform: money held at Stripe (cash)
PLATFORM_REVENUE = "platform_revenue"  # platform: our fee
PARTNER_PAYABLE = "partner_payable"  # owner: partner id; what we owe the partner
REFUNDS = "refunds"  # platform: contra-revenue, the platform's part of refunds
DISPUTES = "disputes"  # platform: contra-revenue, the platform's part of disputes (chargebacks)
PARTNER_PAID_OUT = "partner_paid_out"  # owner: partner id; transfers sent (used by payouts)

ACCOUNT_KINDS = (CONSUMER_RECEIVABLE, DEFERRED_REVENUE, STRIPE_CLEARING, PLATFORM_REVENUE, PARTNER_PAYABLE,
                 REFUNDS, DISPUTES, PARTNER_PAID_OUT)


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("kind", "owner_id", "currency"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str] = mapped_column(String(40), default="")
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerTransaction(IdMixin, Base):
    __tablename__ = "ledger_transactions"
    # One transaction per (kind, reference): posting the same movement twice is a no-op.
    __table_args__ = (UniqueConstraint("kind", "reference"),)

    kind: Mapped[str] = mapped_column(String(40))  # invoice.finalized, invoice.paid, refund, dispute, …
    reference: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    invoice_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    partner_id: Mapped[str | None] = mapped_column(String(40), default=None)
    memo: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(IdMixin, Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_created", "account_id", "created_at"),)

    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # debit +, credit -
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
