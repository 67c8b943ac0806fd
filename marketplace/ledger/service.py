"""Posting to the ledger, and reading balances. The one way money movements are recorded.

`post()` writes one balanced transaction (entries sum to zero, checked here and by the database at
commit), at most once per (kind, reference). The revenue postings billing makes, and the split
rule, live here too so that payouts reads the same accounts billing writes:

| movement | entries (debit +, credit -) |
|---|---|
| invoice.finalized | +consumer_receivable(consumer) / -invoiced_unpaid |
| invoice.voided | the reverse of invoice.finalized |
| invoice.paid | +stripe_clearing / -consumer_receivable(consumer); +invoiced_unpaid / -platform_revenue (fee) / -partner_payable(partner) (share) |
| refund / dispute | -stripe_clearing (amount) / +refunds or +disputes (fee part) / +partner_payable(partner) (share part) |

Split rule: each invoice line is split into (platform fee, partner share) by
`core.money.percent_of` (largest remainder), so fee + share = line exactly; the invoice's fee and
share are the sums over its lines. A refund or dispute of a cumulative amount R is split in
proportion to (fee, share) with the same rule, computed on the cumulative amount and posted as
the difference from what earlier reversals posted, so several partial refunds that add up to the
whole invoice reverse exactly the original split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.db import utcnow
from marketplace.core.ids import new_id
from marketplace.core.money import percent_of, split
from marketplace.ledger.models import (
    CONSUMER_RECEIVABLE,
    DEFERRED_REVENUE,
    DISPUTES,
    PARTNER_PAYABLE,
    PLATFORM_REVENUE,
    REFUNDS,
    STRIPE_CLEARING,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)


class UnbalancedTransaction(ValueError):
    pass


@dataclass(frozen=True)
class Leg:
    kind: str
    owner_id: str
    amount: int  # debit +, credit -


async def account_id(session: AsyncSession, kind: str, owner_id: str, currency: str) -> int:
    cache: dict[tuple[str, str, str], int] = session.info.setdefault("ledger_accounts", {})
    key = (kind, owner_id, currency)
    if key in cache:
        return cache[key]
    found = await session.scalar(
        insert(LedgerAccount).values(kind=kind, owner_id=owner_id, currency=currency, created_at=utcnow())
        .on_conflict_do_nothing().returning(LedgerAccount.id)
    )
    if found is None:
        found = await session.scalar(select(LedgerAccount.id).where(
            LedgerAccount.kind == kind, LedgerAccount.owner_id == owner_id, LedgerAccount.currency == currency))
    cache[key] = int(found)  # type: ignore[arg-type]
    return cache[key]


async def post(session: AsyncSession, *, kind: str, reference: str, currency: str, legs: Sequence[Leg],
               invoice_id: str | None = None, partner_id: str | None = None, memo: dict[str, Any] | None = None,
               at: datetime | None = None) -> str | None:
    """Record one balanced transaction; returns its id, or None if (kind, reference) was posted before."""
    if sum(leg.amount for leg in legs) != 0:
        raise UnbalancedTransaction(f"{kind} {reference}: legs sum to {sum(leg.amount for leg in legs)}, not 0")
    when = at or utcnow()
    tx_id = await session.scalar(
        insert(LedgerTransaction).values(id=new_id("ledger_tx"), kind=kind, reference=reference, currency=currency,
                                         invoice_id=invoice_id, partner_id=partner_id, memo=memo or {},
                                         created_at=when)
        .on_conflict_do_nothing(index_elements=["kind", "reference"]).returning(LedgerTransaction.id)
    )
    if tx_id is None:
        return None
    rows = []
    for leg in legs:
        if leg.amount == 0:
            continue
        rows.append({"id": new_id("ledger_entry"), "transaction_id": tx_id, "currency": currency, "created_at": when,
                     "amount": leg.amount, "account_id": await account_id(session, leg.kind, leg.owner_id, currency)})
    if rows:
        await session.execute(insert(LedgerEntry), rows)
    return str(tx_id)


# ---- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Balance:
    kind: str
    owner_id: str
    currency: str
    balance: int


async def balances(session: AsyncSession, currency: str | None = None) -> list[Balance]:
    stmt = (select(LedgerAccount.kind, LedgerAccount.owner_id, LedgerAccount.currency,
                   func.coalesce(func.sum(LedgerEntry.amount), 0))
            .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .group_by(LedgerAccount.id).order_by(LedgerAccount.currency, LedgerAccount.kind, LedgerAccount.owner_id))
    if currency:
        stmt = stmt.where(LedgerAccount.currency == currency)
    return [Balance(k, o, c, int(b)) for k, o, c, b in await session.execute(stmt)]


async def account_balance(session: AsyncSession, kind: str, owner_id: str, currency: str,
                          up_to: datetime | None = None) -> int:
    stmt = (select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerAccount, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.kind == kind, LedgerAccount.owner_id == owner_id, LedgerAccount.currency == currency))
    if up_to is not None:
        stmt = stmt.where(LedgerEntry.created_at <= up_to)
    return int(await session.scalar(stmt) or 0)


async def partner_payable_balance(session: AsyncSession, partner_id: str, currency: str,
                                  up_to: datetime | None = None) -> int:
    """What the platform owes the partner in `currency` from entries posted up to `up_to` (positive =
    owed to the partner; negative after refunds that exceed what is left). For payout batches."""
    return -await account_balance(session, PARTNER_PAYABLE, partner_id, currency, up_to)


async def partner_payable_currencies(session: AsyncSession, partner_id: str | None = None) -> list[tuple[str, str]]:
    """(partner_id, currency) pairs that have a partner payable account."""
    stmt = select(LedgerAccount.owner_id, LedgerAccount.currency).where(LedgerAccount.kind == PARTNER_PAYABLE)
    if partner_id:
        stmt = stmt.where(LedgerAccount.owner_id == partner_id)
    return [(o, c) for o, c in await session.execute(stmt.order_by(LedgerAccount.owner_id, LedgerAccount.currency))]


# ---- the revenue postings billing makes ---------------------------------------------------------

def split_lines(line_amounts: Iterable[int], fee_percent: int | Decimal) -> tuple[int, int]:
    """(platform fee, partner share) summed over the lines, each line split by largest remainder."""
    fee = share = 0
    for amount in line_amounts:
        f, s = percent_of(amount, fee_percent)
        fee += f
        share += s
    return fee, share


def reversal_parts(cumulative: int, fee: int, share: int) -> tuple[int, int]:
    """The (fee part, share part) of a cumulative reversal `cumulative` of an invoice split (fee, share)."""
    if cumulative <= 0 or fee + share <= 0:
        return 0, 0
    cumulative = min(cumulative, fee + share)
    if fee == 0 or share == 0:
        return (cumulative, 0) if share == 0 else (0, cumulative)
    f, s = split(cumulative, [fee, share])
    return f, s


async def post_invoice_finalized(session: AsyncSession, *, invoice_id: str, consumer_id: str, partner_id: str,
                                 currency: str, total: int, at: datetime | None = None) -> str | None:
    return await post(session, kind="invoice.finalized", reference=invoice_id, currency=currency,
                      invoice_id=invoice_id, partner_id=partner_id, at=at,
                      legs=[Leg(CONSUMER_RECEIVABLE, consumer_id, total), Leg(DEFERRED_REVENUE, "", -total)])


async def post_invoice_voided(session: AsyncSession, *, invoice_id: str, consumer_id: str, partner_id: str,
                              currency: str, total: int) -> str | None:
    return await post(session, kind="invoice.voided", reference=invoice_id, currency=currency,
                      invoice_id=invoice_id, partner_id=partner_id,
                      legs=[Leg(CONSUMER_RECEIVABLE, consumer_id, -total), Leg(DEFERRED_REVENUE, "", total)])


async def post_invoice_paid(session: AsyncSession, *, invoice_id: str, consumer_id: str, partner_id: str,
                            currency: str, total: int, fee: int, share: int, at: datetime | None = None) -> str | None:
    if fee + share != total:
        raise UnbalancedTransaction(f"invoice {invoice_id}: fee {fee} + share {share} != total {total}")
    return await post(session, kind="invoice.paid", reference=invoice_id, currency=currency, invoice_id=invoice_id,
                      partner_id=partner_id, at=at, memo={"platform_fee": fee, "partner_share": share},
                      legs=[Leg(STRIPE_CLEARING, "", total), Leg(CONSUMER_RECEIVABLE, consumer_id, -total),
                            Leg(DEFERRED_REVENUE, "", total), Leg(PLATFORM_REVENUE, "", -fee),
                            Leg(PARTNER_PAYABLE, partner_id, -share)])


async def post_reversal(session: AsyncSession, *, kind: str, reference: str, invoice_id: str, partner_id: str,
                        currency: str, fee: int, share: int, reversed_before: int, reversed_after: int,
                        at: datetime | None = None) -> str | None:
    """A refund (kind "refund") or dispute ("dispute") taking the invoice's cumulative reversals from
    `reversed_before` to `reversed_after`; reverses the split proportionally."""
    f0, s0 = reversal_parts(reversed_before, fee, share)
    f1, s1 = reversal_parts(reversed_after, fee, share)
    fee_part, share_part = f1 - f0, s1 - s0
    contra = REFUNDS if kind == "refund" else DISPUTES
    return await post(session, kind=kind, reference=reference, currency=currency, invoice_id=invoice_id,
                      partner_id=partner_id, at=at, memo={"platform_fee_part": fee_part, "partner_share_part": share_part},
                      legs=[Leg(STRIPE_CLEARING, "", -(fee_part + share_part)), Leg(contra, "", fee_part),
                            Leg(PARTNER_PAYABLE, partner_id, share_part)])
