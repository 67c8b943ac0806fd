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

from sqlalchemy import func, select, tuple_
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


async def account_ids(session: AsyncSession, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """Ids of the accounts (kind, owner_id, currency), created when missing (two queries for any number)."""
    cache: dict[tuple[str, str, str], int] = session.info.setdefault("ledger_accounts", {})
    missing = sorted({k for k in keys if k not in cache})
    if missing:
        now = utcnow()
        await session.execute(insert(LedgerAccount).values(
            [{"kind": k, "owner_id": o, "currency": c, "created_at": now} for k, o, c in missing]).on_conflict_do_nothing())
        rows = await session.execute(select(LedgerAccount.kind, LedgerAccount.owner_id, LedgerAccount.currency,
                                            LedgerAccount.id)
                                     .where(tuple_(LedgerAccount.kind, LedgerAccount.owner_id, LedgerAccount.currency)
                                            .in_(missing)))
        for k, o, c, i in rows:
            cache[(k, o, c)] = int(i)
    return cache


async def account_id(session: AsyncSession, kind: str, owner_id: str, currency: str) -> int:
    return (await account_ids(session, [(kind, owner_id, currency)]))[(kind, owner_id, currency)]


@dataclass(frozen=True)
class Posting:
    kind: str
    reference: str
    currency: str
    legs: Sequence[Leg]
    invoice_id: str | None = None
    partner_id: str | None = None
    memo: dict[str, Any] | None = None
    at: datetime | None = None


async def post_many(session: AsyncSession, postings: Sequence[Posting]) -> dict[tuple[str, str], str]:
    """Record many balanced transactions in a few statements; returns {(kind, reference): id} of the
    ones recorded now (those posted before are skipped: posting is idempotent per (kind, reference))."""
    if not postings:
        return {}
    for p in postings:
        if sum(leg.amount for leg in p.legs) != 0:
            raise UnbalancedTransaction(f"{p.kind} {p.reference}: legs sum to {sum(leg.amount for leg in p.legs)}, not 0")
    now = utcnow()
    rows = await session.execute(
        insert(LedgerTransaction).on_conflict_do_nothing(index_elements=["kind", "reference"])
        .returning(LedgerTransaction.id, LedgerTransaction.kind, LedgerTransaction.reference),
        [{"id": new_id("ledger_tx"), "kind": p.kind, "reference": p.reference, "currency": p.currency,
          "invoice_id": p.invoice_id, "partner_id": p.partner_id, "memo": p.memo or {}, "created_at": p.at or now}
         for p in postings])
    created: dict[tuple[str, str], str] = {(kind, reference): str(tx_id) for tx_id, kind, reference in rows}
    fresh = [p for p in postings if (p.kind, p.reference) in created]
    ids = await account_ids(session, [(leg.kind, leg.owner_id, p.currency) for p in fresh for leg in p.legs])
    entries = [{"id": new_id("ledger_entry"), "transaction_id": created[(p.kind, p.reference)], "currency": p.currency,
                "created_at": p.at or now, "amount": leg.amount, "account_id": ids[(leg.kind, leg.owner_id, p.currency)]}
               for p in fresh for leg in p.legs if leg.amount != 0]
    if entries:
        await session.execute(insert(LedgerEntry), entries)
    return created


async def post(session: AsyncSession, *, kind: str, reference: str, currency: str, legs: Sequence[Leg],
               invoice_id: str | None = None, partner_id: str | None = None, memo: dict[str, Any] | None = None,
               at: datetime | None = None) -> str | None:
    """Record one balanced transaction; returns its id, or None if (kind, reference) was posted before."""
    created = await post_many(session, [Posting(kind=kind, reference=reference, currency=currency, legs=legs,
                                                invoice_id=invoice_id, partner_id=partner_id, memo=memo, at=at)])
    return created.get((kind, reference))


async def reverse(session: AsyncSession, *, kind: str, reference: str, reversal_kind: str,
                  memo: dict[str, Any] | None = None) -> str | None:
    """Post the exact opposite of transaction (kind, reference) as (reversal_kind, reference): how a
    posted movement is corrected (entries are never edited). None if it does not exist or was reversed."""
    tx = await session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == kind,
                                                              LedgerTransaction.reference == reference))
    if tx is None:
        return None
    rows = await session.execute(select(LedgerAccount.kind, LedgerAccount.owner_id, LedgerEntry.amount)
                                 .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                                 .where(LedgerEntry.transaction_id == tx.id))
    legs = [Leg(k, o, -int(a)) for k, o, a in rows]
    return await post(session, kind=reversal_kind, reference=reference, currency=tx.currency, legs=legs,
                      invoice_id=tx.invoice_id, partner_id=tx.partner_id, memo={"reverses": tx.id, **(memo or {})})


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


async def partner_payables(session: AsyncSession, up_to: datetime | None = None) -> dict[tuple[str, str], int]:
    """Every partner's payable balance per currency from entries up to `up_to`, in one query:
    {(partner_id, currency): amount owed (positive)}. The starting point of a payout batch."""
    stmt = (select(LedgerAccount.owner_id, LedgerAccount.currency, func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.kind == PARTNER_PAYABLE)
            .group_by(LedgerAccount.owner_id, LedgerAccount.currency))
    if up_to is not None:
        stmt = stmt.where(LedgerEntry.created_at <= up_to)
    return {(o, c): -int(b) for o, c, b in await session.execute(stmt)}


async def partner_payable_by_invoice(session: AsyncSession, partner_id: str, currency: str,
                                     up_to: datetime | None = None) -> dict[str | None, int]:
    """The partner's payable split by the invoice behind each movement ({invoice_id: amount owed};
    None for movements without an invoice, e.g. transfers): "the invoices behind a payout line"."""
    stmt = (select(LedgerTransaction.invoice_id, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerAccount.kind == PARTNER_PAYABLE, LedgerAccount.owner_id == partner_id,
                   LedgerAccount.currency == currency)
            .group_by(LedgerTransaction.invoice_id))
    if up_to is not None:
        stmt = stmt.where(LedgerEntry.created_at <= up_to)
    return {i: -int(a) for i, a in await session.execute(stmt)}


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


def invoice_finalized(*, invoice_id: str, consumer_id: str, partner_id: str, currency: str, total: int,
                      at: datetime | None = None) -> Posting:
    return Posting(kind="invoice.finalized", reference=invoice_id, currency=currency, invoice_id=invoice_id,
                   partner_id=partner_id, at=at,
                   legs=[Leg(CONSUMER_RECEIVABLE, consumer_id, total), Leg(DEFERRED_REVENUE, "", -total)])


async def post_invoice_finalized(session: AsyncSession, *, invoice_id: str, consumer_id: str, partner_id: str,
                                 currency: str, total: int, at: datetime | None = None) -> str | None:
    posting = invoice_finalized(invoice_id=invoice_id, consumer_id=consumer_id, partner_id=partner_id,
                                currency=currency, total=total, at=at)
    return (await post_many(session, [posting])).get((posting.kind, posting.reference))


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
