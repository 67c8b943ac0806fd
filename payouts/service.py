"""Payout rules: building batches from the ledger, operator review, sending each line's Stripe
transfer exactly once, transfer reversals, partner balances and reconciliation with Stripe.

Batches. `create_batch(period_end)` takes a transaction-scoped advisory lock (one batch is built at
a time) and collects the **unclaimed** ledger transactions on each partner's payable account:
invoice payments whose invoice was paid by the batch's cutoff = min(period_end, now -
PAYOUT_HOLDING_DAYS), the refunds/disputes (and won disputes) of those invoices posted by
period_end, and returned transfers (`payout.reversed`). Per partner and currency they make one line:
amount = the partner's share, platform_fee = our part, gross = both. A line that will be paid claims
its transactions in `payout_claims` (primary key = the ledger transaction: the database refuses a
second claim), so two batches never pay the same earnings. Lines that are negative (refunds after a
payout), under PAYOUT_MINIMUM_AMOUNT, or for partners without `payouts_enabled` are recorded as
`carried_over` with the reason and claim nothing: the next batch collects the same transactions
again and nets them against new earnings.

Line states: pending_review ↔ held; pending_review → approved → sending → paid | failed;
paid → reversed (transfer.reversed); held lines may also be held from `approved` before their job
starts. Every transition locks the line (`SELECT … FOR UPDATE`).

Sending (`send_line`, one arq job per line, job id `payout-line-{id}`), three short transactions:
(1) lock, approved → sending (committed before Stripe is called); (2) call Stripe: if the line was
already `sending` (a retried job after a crash) first look for its transfer at Stripe (by
`transfer_group` = batch id, `metadata.payout_line_id`) and only create one if none exists; the
create always carries idempotency key `payout-line-{id}`; (3) lock again and record paid/failed
(only from `sending`). A failed line gives its claims back.

Ledger postings (kind, reference = the line id):
| movement | entries (debit +, credit -) |
|---|---|
| payout (transfer created) | +partner_payable(partner) / -stripe_clearing (the money leaves our Stripe balance) |
| payout.reversed (transfer.reversed, cumulative R) | -partner_payable(partner) / +stripe_clearing, for R minus what earlier reversals posted |
`partner_paid_out` is not used: what was paid out is the lines' record (paid, net of reversals),
and partner_payable stays "what we owe the partner now".
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import and_, case, delete, exists, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing.models import Invoice
from marketplace.core.db import utcnow
from marketplace.core.errors import Conflict, NotFound, Unprocessable
from marketplace.core.events import publish
from marketplace.core.ids import new_id
from marketplace.core.stripe import idempotency_key, stripe_client
from marketplace.ledger import service as ledger
from marketplace.ledger.models import (
    DISPUTES,
    PARTNER_PAYABLE,
    PLATFORM_REVENUE,
    REFUNDS,
    STRIPE_CLEARING,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
from marketplace.settings import get_settings
from partners.models import Partner
from payouts.models import PayoutBatch, PayoutClaim, PayoutLine

BATCH_LOCK = 7_007_007_001  # pg_advisory_xact_lock key: one batch is built at a time
PAYOUT_KIND = "payout"
PAYOUT_REVERSED_KIND = "payout.reversed"
FEE_ACCOUNTS = (PLATFORM_REVENUE, REFUNDS, DISPUTES)
IN_FLIGHT = ("approved", "sending")
IN_BATCH = ("pending_review", "approved", "sending")


# ---- collecting what is payable --------------------------------------------------------------

@dataclass
class Movement:
    transaction_id: str
    partner_id: str
    currency: str
    invoice_id: str | None
    amount: int  # the partner's part (positive: owed to the partner)
    fee: int  # the platform's part of the same money


@dataclass
class Group:
    partner_id: str
    currency: str
    movements: list[Movement] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return sum(m.amount for m in self.movements)

    @property
    def fee(self) -> int:
        return sum(m.fee for m in self.movements)

    @property
    def invoice_ids(self) -> list[str]:
        return sorted({m.invoice_id for m in self.movements if m.invoice_id})


async def claimable(session: AsyncSession, *, cutoff: datetime, period_end: datetime,
                    partner_id: str | None = None) -> dict[tuple[str, str], Group]:
    """Unclaimed partner-payable transactions a batch at (cutoff, period_end) may pay, grouped."""
    tx, acc, entry = LedgerTransaction, LedgerAccount, LedgerEntry
    is_payable = acc.kind == PARTNER_PAYABLE
    stmt = (
        select(tx.id, tx.invoice_id, tx.currency,
               func.max(case((is_payable, acc.owner_id))),
               -func.sum(case((is_payable, entry.amount), else_=0)),
               -func.sum(case((acc.kind.in_(FEE_ACCOUNTS), entry.amount), else_=0)))
        .join(entry, entry.transaction_id == tx.id)
        .join(acc, acc.id == entry.account_id)
        .outerjoin(Invoice, Invoice.id == tx.invoice_id)
        .where(tx.kind != PAYOUT_KIND, tx.created_at <= period_end,
               or_(and_(tx.invoice_id.is_(None), tx.kind == PAYOUT_REVERSED_KIND), Invoice.paid_at <= cutoff),
               ~exists().where(PayoutClaim.ledger_transaction_id == tx.id))
        .group_by(tx.id)
        .having(func.count(case((is_payable, 1))) > 0)
    )
    if partner_id is not None:
        stmt = stmt.where(tx.id.in_(select(entry.transaction_id).join(acc, acc.id == entry.account_id)
                                    .where(is_payable, acc.owner_id == partner_id)))
    groups: dict[tuple[str, str], Group] = {}
    for tx_id, invoice_id, currency, owner, amount, fee in await session.execute(stmt):
        if partner_id is not None and owner != partner_id:
            continue
        group = groups.setdefault((owner, currency), Group(owner, currency))
        group.movements.append(Movement(tx_id, owner, currency, invoice_id, int(amount), int(fee)))
    return groups


def cutoff_for(period_end: datetime, now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return min(period_end, now - timedelta(days=get_settings().payout_holding_days))


def carry_reason(partner: Partner, amount: int, currency: str) -> str | None:
    minimum = get_settings().payout_minimum_amount
    if amount < 0:
        return (f"Negative balance of {amount} {currency.upper()} (refunds or disputes after an earlier payout): "
                "carried into the next batch and netted against new earnings.")
    if partner.status != "active":
        return f"The partner is {partner.status}: its payouts wait until it is reinstated."
    if not partner.payouts_enabled or not partner.stripe_account_id:
        return ("The partner has not finished Stripe Connect onboarding (payouts are not enabled on its account): "
                "carried over until Stripe enables payouts.")
    if amount < minimum:
        return f"Below the minimum payout of {minimum} {currency.upper()} (PAYOUT_MINIMUM_AMOUNT): carried over."
    return None


async def create_batch(session: AsyncSession, *, period_end: datetime, operator_id: str) -> PayoutBatch:
    now = utcnow()
    if period_end.tzinfo is None:
        raise Unprocessable("period_end needs a time zone (use UTC, e.g. 2026-12-01T00:00:00Z).",
                            errors=[{"field": "period_end", "message": "must include a UTC offset"}])
    if period_end > now + timedelta(minutes=5):
        raise Unprocessable("period_end is in the future: a batch can only pay what was earned up to now.",
                            errors=[{"field": "period_end", "message": "must not be in the future"}])
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BATCH_LOCK})
    cutoff = cutoff_for(period_end, now)
    groups = await claimable(session, cutoff=cutoff, period_end=period_end)
    partners = {p.id: p for p in (await session.scalars(
        select(Partner).where(Partner.id.in_({pid for pid, _ in groups})))).all()} if groups else {}
    batch = PayoutBatch(id=new_id("payout_batch"), period_end=period_end, cutoff=cutoff, status="pending_review",
                        created_by=operator_id, approved_by=[], created_at=now, updated_at=now)
    lines: list[PayoutLine] = []
    claims: list[dict[str, Any]] = []
    for (partner_id, currency), group in sorted(groups.items()):
        partner = partners.get(partner_id)
        amount = group.amount
        if partner is None or amount == 0:
            continue  # not a partner organisation (test fixtures), or nothing owed either way
        reason = carry_reason(partner, amount, currency)
        line = PayoutLine(id=new_id("payout_line"), batch_id=batch.id, partner_id=partner_id, currency=currency,
                          gross=amount + group.fee, platform_fee=group.fee, amount=amount,
                          status="carried_over" if reason else "pending_review", reason=reason,
                          invoice_ids=group.invoice_ids, amount_reversed=0, created_at=now, updated_at=now)
        lines.append(line)
        if reason is None:
            claims.extend({"ledger_transaction_id": m.transaction_id, "line_id": line.id, "amount": m.amount}
                          for m in group.movements)
    if not lines:
        raise Unprocessable(f"Nothing to pay out up to {period_end.isoformat()}: no partner has earnings from "
                            f"invoices paid by {cutoff.isoformat()} (PAYOUT_HOLDING_DAYS) that an earlier batch "
                            "has not claimed.", slug="nothing-to-pay-out")
    session.add(batch)
    await session.flush()
    session.add_all(lines)
    await session.flush()
    if claims:
        # Plain INSERT: a claim on an already claimed transaction is refused by the primary key.
        await session.execute(insert(PayoutClaim), claims)
    for line in lines:
        if line.status == "pending_review":
            publish(session, "payout.batch_created", {"batch_id": batch.id, "line_id": line.id, "amount": line.amount,
                                                      "currency": line.currency}, partner_id=line.partner_id)
    return batch


# ---- reading batches ------------------------------------------------------------------------

async def get_batch(session: AsyncSession, batch_id: str, *, lock: bool = False) -> PayoutBatch:
    batch = await session.get(PayoutBatch, batch_id, with_for_update=lock or None,
                              populate_existing=lock)
    if batch is None:
        raise NotFound(f"No payout batch {batch_id!r}. List batches with GET /v1/admin/payout-batches.")
    return batch


async def batch_lines(session: AsyncSession, batch_id: str) -> list[PayoutLine]:
    return list((await session.scalars(select(PayoutLine).where(PayoutLine.batch_id == batch_id)
                                       .order_by(PayoutLine.currency, PayoutLine.partner_id))).all())


async def partner_names(session: AsyncSession, partner_ids: set[str]) -> dict[str, str]:
    if not partner_ids:
        return {}
    return dict((i, n) for i, n in await session.execute(select(Partner.id, Partner.name)
                                                          .where(Partner.id.in_(partner_ids))))


@dataclass
class Totals:
    currency: str
    lines: int = 0
    gross: int = 0
    platform_fee: int = 0
    amount: int = 0  # payable lines (everything but carried over)
    pending_review: int = 0
    held: int = 0
    in_flight: int = 0
    paid: int = 0
    failed: int = 0
    carried_over: int = 0


def totals(lines: list[PayoutLine]) -> list[Totals]:
    by: dict[str, Totals] = {}
    for line in lines:
        t = by.setdefault(line.currency, Totals(line.currency))
        t.lines += 1
        if line.status == "carried_over":
            t.carried_over += line.amount
            continue
        t.gross += line.gross
        t.platform_fee += line.platform_fee
        t.amount += line.amount
        if line.status == "pending_review":
            t.pending_review += line.amount
        elif line.status == "held":
            t.held += line.amount
        elif line.status in IN_FLIGHT:
            t.in_flight += line.amount
        elif line.status in ("paid", "reversed"):
            t.paid += line.amount - line.amount_reversed
        elif line.status == "failed":
            t.failed += line.amount
    return [by[c] for c in sorted(by)]


def display_status(batch: PayoutBatch, lines: list[PayoutLine]) -> str:
    """The stored status, or `processing`/`completed` once approved (by the lines' states)."""
    if batch.status != "approved":
        return batch.status
    if any(line.status in IN_FLIGHT for line in lines):
        return "processing"
    if any(line.status in ("pending_review", "held") for line in lines):
        return "partially_approved"
    return "completed"


CSV_FIELDS = ["line_id", "batch_id", "partner_id", "partner_name", "currency", "gross", "platform_fee", "amount",
              "status", "reason", "invoice_ids", "stripe_transfer_id", "amount_reversed"]


def _cell(value: Any) -> Any:
    # Spreadsheet formula injection: text starting with = + - @ is prefixed with a quote.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def batch_csv(batch: PayoutBatch, lines: list[PayoutLine], names: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for line in lines:
        writer.writerow([_cell(v) for v in (
            line.id, batch.id, line.partner_id, names.get(line.partner_id, ""), line.currency, line.gross,
            line.platform_fee, line.amount, line.status, line.reason or "", " ".join(line.invoice_ids or []),
            line.stripe_transfer_id or "", line.amount_reversed)])
    return out.getvalue()


# ---- review ---------------------------------------------------------------------------------

async def _line(session: AsyncSession, batch_id: str, line_id: str) -> PayoutLine:
    line = await session.get(PayoutLine, line_id, with_for_update=True, populate_existing=True)
    if line is None or line.batch_id != batch_id:
        raise NotFound(f"No line {line_id!r} in payout batch {batch_id!r}. "
                       f"See the batch's lines with GET /v1/admin/payout-batches/{batch_id}.")
    return line


async def hold_line(session: AsyncSession, batch_id: str, line_id: str, *, reason: str, operator_id: str) -> PayoutLine:
    reason = reason.strip()
    if not reason or len(reason) > 500:
        raise Unprocessable("Say why the line is held in 1 to 500 characters.",
                            errors=[{"field": "reason", "message": "must be 1 to 500 characters"}])
    await get_batch(session, batch_id)
    line = await _line(session, batch_id, line_id)
    if line.status == "held":
        line.reason, line.held_by = reason, operator_id
        return line
    if line.status not in ("pending_review", "approved"):
        raise Conflict(f"This line is {line.status}; only lines pending review or approved (not yet sent) can be "
                       "held.", slug="payout-line-state")
    line.status, line.reason, line.held_by = "held", reason, operator_id
    return line


async def release_line(session: AsyncSession, batch_id: str, line_id: str) -> PayoutLine:
    await get_batch(session, batch_id)
    line = await _line(session, batch_id, line_id)
    if line.status == "pending_review":
        return line
    if line.status != "held":
        raise Conflict(f"This line is {line.status}; only held lines can be released.", slug="payout-line-state")
    line.status, line.reason, line.held_by = "pending_review", None, None
    return line


@dataclass
class Approval:
    batch: PayoutBatch
    to_send: list[str]
    awaiting_second: bool = False


async def approve_batch(session: AsyncSession, batch_id: str, *, operator_id: str) -> Approval:
    """Approve every line pending review (the batch row is locked: two operators at once queue up).
    Returns the lines to send: every `approved` line, so that calling it again re-enqueues lines
    whose job was lost (their jobs are no-ops once the line has left `approved`)."""
    batch = await get_batch(session, batch_id, lock=True)
    lines = list((await session.scalars(select(PayoutLine).where(PayoutLine.batch_id == batch_id)
                                        .with_for_update().execution_options(populate_existing=True))).all())
    threshold = get_settings().payout_second_approval_above
    if batch.status != "approved" and threshold is not None:
        by_currency: dict[str, int] = defaultdict(int)
        for line in lines:
            if line.status in ("pending_review", "held", *IN_FLIGHT):
                by_currency[line.currency] += line.amount
        if any(total > threshold for total in by_currency.values()):
            if batch.status == "pending_review":
                batch.status, batch.approved_by = "awaiting_second_approval", [operator_id]
                return Approval(batch, [], awaiting_second=True)
            if operator_id in batch.approved_by:
                raise Conflict(f"This batch is above {threshold} (PAYOUT_SECOND_APPROVAL_ABOVE) and needs a second "
                               "approval by a different operator; you approved it already.",
                               slug="second-approval-required")
    if operator_id not in batch.approved_by:
        batch.approved_by = [*batch.approved_by, operator_id]
    if batch.status != "approved":
        batch.status, batch.approved_at = "approved", utcnow()
    for line in lines:
        if line.status == "pending_review":
            line.status = "approved"
    return Approval(batch, [line.id for line in lines if line.status == "approved"])


# ---- sending ----------------------------------------------------------------------------------

def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, None)


async def release_claims(session: AsyncSession, line_id: str) -> None:
    await session.execute(delete(PayoutClaim).where(PayoutClaim.line_id == line_id))


def _event(line: PayoutLine, **extra: Any) -> dict[str, Any]:
    return {"id": line.id, "batch_id": line.batch_id, "partner_id": line.partner_id, "amount": line.amount,
            "currency": line.currency, **extra}


async def fail_line(session: AsyncSession, line: PayoutLine, message: str) -> None:
    line.status, line.reason, line.failed_at = "failed", message, utcnow()
    await release_claims(session, line.id)
    publish(session, "payout.failed", _event(line, failure_message=message), partner_id=line.partner_id)


async def mark_paid(session: AsyncSession, line: PayoutLine, transfer_id: str) -> None:
    line.status, line.stripe_transfer_id, line.paid_at, line.reason = "paid", transfer_id, utcnow(), None
    await ledger.post(session, kind=PAYOUT_KIND, reference=line.id, currency=line.currency, partner_id=line.partner_id,
                      memo={"batch_id": line.batch_id, "transfer_id": transfer_id},
                      legs=[ledger.Leg(PARTNER_PAYABLE, line.partner_id, line.amount),
                            ledger.Leg(STRIPE_CLEARING, "", -line.amount)])
    publish(session, "payout.paid", _event(line, transfer_id=transfer_id), partner_id=line.partner_id)


@dataclass
class Prepared:
    line_id: str
    batch_id: str
    amount: int
    currency: str
    destination: str
    retry: bool


async def prepare_send(session: AsyncSession, line_id: str) -> Prepared | str:
    """Phase 1 (committed before Stripe is called): approved → sending. A line already `sending`
    is a retry after a crash. Anything else: nothing to do (returns the status)."""
    line = await session.get(PayoutLine, line_id, with_for_update=True, populate_existing=True)
    if line is None:
        return "missing"
    if line.status not in IN_FLIGHT:
        return line.status
    retry = line.status == "sending"
    partner = await session.get(Partner, line.partner_id)
    if not retry and (partner is None or partner.status != "active" or not partner.payouts_enabled
                      or not partner.stripe_account_id):
        await fail_line(session, line, "The partner cannot receive payouts any more (suspended, or payouts_enabled "
                                       "is false on its Stripe account); the amount returns to its balance.")
        return "failed"
    if not retry:
        assert partner is not None
        line.status, line.destination, line.sent_at = "sending", partner.stripe_account_id, utcnow()
    return Prepared(line.id, line.batch_id, line.amount, line.currency, str(line.destination), retry)


async def list_transfers(transfer_group: str) -> list[Any]:
    client = stripe_client()
    found: list[Any] = []
    params: dict[str, Any] = {"transfer_group": transfer_group, "limit": 100}
    while True:
        page = await client.v1.transfers.list_async(params)  # type: ignore[arg-type]
        data = list(_get(page, "data") or [])
        found.extend(data)
        if not _get(page, "has_more") or not data:
            return found
        params["starting_after"] = _get(data[-1], "id")


def _line_of(transfer: Any) -> str | None:
    return _get(_get(transfer, "metadata"), "payout_line_id")


async def call_stripe(prepared: Prepared) -> tuple[str, Any]:
    """Phase 2: ("paid", transfer id) | ("failed", Stripe's message) | ("error", message: retry later)."""
    try:
        if prepared.retry:
            for transfer in await list_transfers(prepared.batch_id):
                if _line_of(transfer) == prepared.line_id:
                    return "paid", _get(transfer, "id")
        transfer = await stripe_client().v1.transfers.create_async(
            {"amount": prepared.amount, "currency": prepared.currency, "destination": prepared.destination,
             "transfer_group": prepared.batch_id, "metadata": {"payout_line_id": prepared.line_id}},
            options={"idempotency_key": idempotency_key("payout-line", prepared.line_id)})  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        message = exc.user_message or str(_get(exc.error, "message") or "") or type(exc).__name__
        status = exc.http_status or 0
        if 400 <= status < 500 and status not in (409, 429):
            return "failed", message
        return "error", f"{type(exc).__name__}: {message}"
    return "paid", transfer.id


async def record_result(session: AsyncSession, line_id: str, outcome: str, value: str) -> str:
    """Phase 3: only a line still `sending` takes the result (a duplicate job finds it settled)."""
    line = await session.get(PayoutLine, line_id, with_for_update=True, populate_existing=True)
    if line is None or line.status != "sending":
        return line.status if line else "missing"
    if outcome == "paid":
        await mark_paid(session, line, value)
    elif outcome == "failed":
        await fail_line(session, line, value)
    else:
        line.reason = value  # a transient Stripe error: stays sending, retried with the same key
    return line.status


async def send_line(sessionmaker: Any, line_id: str) -> str:
    async with sessionmaker.begin() as session:
        prepared = await prepare_send(session, line_id)
    if isinstance(prepared, str):
        return prepared
    outcome, value = await call_stripe(prepared)
    async with sessionmaker.begin() as session:
        status = await record_result(session, line_id, outcome, value)
    return "error" if outcome == "error" else status


# ---- Stripe events: transfer.reversed -----------------------------------------------------------

async def on_transfer_reversed(session: AsyncSession, event: dict[str, Any]) -> None:
    transfer = dict((event.get("data") or {}).get("object") or {})
    line = None
    if transfer.get("id"):
        line = await session.scalar(select(PayoutLine).where(PayoutLine.stripe_transfer_id == transfer["id"])
                                    .with_for_update())
    line_id = (transfer.get("metadata") or {}).get("payout_line_id")
    if line is None and isinstance(line_id, str):
        line = await session.get(PayoutLine, line_id, with_for_update=True)
    if line is None or line.status not in ("paid", "reversed"):
        return
    cumulative = min(int(transfer.get("amount_reversed") or transfer.get("amount") or 0), line.amount)
    if cumulative <= line.amount_reversed:
        return  # already recorded (Stripe sends several events about one transfer)
    delta = cumulative - line.amount_reversed
    await ledger.post(session, kind=PAYOUT_REVERSED_KIND, reference=f"{line.id}:{cumulative}", currency=line.currency,
                      partner_id=line.partner_id, memo={"batch_id": line.batch_id, "transfer_id": transfer.get("id"),
                                                        "cumulative": cumulative},
                      legs=[ledger.Leg(PARTNER_PAYABLE, line.partner_id, -delta),
                            ledger.Leg(STRIPE_CLEARING, "", delta)])
    line.amount_reversed = cumulative
    if cumulative >= line.amount:
        line.status, line.reversed_at = "reversed", utcnow()
        line.reason = "The transfer was reversed at Stripe; the amount is back in the partner's balance."


# ---- partner side --------------------------------------------------------------------------------

@dataclass
class PartnerBalance:
    currency: str
    earned: int = 0  # lifetime share, net of refunds and disputes
    pending: int = 0  # in the holding period, or in a batch not paid yet
    in_holding: int = 0
    in_batches: int = 0
    held: int = 0
    paid_out: int = 0
    available: int = 0  # what the next batch would pay (negative: carried over)
    owed: int = 0  # the ledger's partner payable = pending + held + available


async def partner_balance(session: AsyncSession, partner_id: str) -> list[PartnerBalance]:
    tx, acc, entry = LedgerTransaction, LedgerAccount, LedgerEntry
    rows = await session.execute(
        select(acc.currency,
               -func.sum(case((tx.kind.not_in((PAYOUT_KIND, PAYOUT_REVERSED_KIND)), entry.amount), else_=0)),
               -func.sum(entry.amount))
        .join(entry, entry.account_id == acc.id).join(tx, tx.id == entry.transaction_id)
        .where(acc.kind == PARTNER_PAYABLE, acc.owner_id == partner_id).group_by(acc.currency))
    out: dict[str, PartnerBalance] = {}
    for currency, earned, owed in rows:
        out[currency] = PartnerBalance(currency, earned=int(earned), owed=int(owed))
    lines = await session.execute(
        select(PayoutLine.currency, PayoutLine.status, func.sum(PayoutLine.amount - PayoutLine.amount_reversed))
        .where(PayoutLine.partner_id == partner_id, PayoutLine.status.in_((*IN_BATCH, "held", "paid", "reversed")))
        .group_by(PayoutLine.currency, PayoutLine.status))
    for currency, status, amount in lines:
        b = out.setdefault(currency, PartnerBalance(currency))
        if status == "held":
            b.held += int(amount)
        elif status in IN_BATCH:
            b.in_batches += int(amount)
        else:
            b.paid_out += int(amount)
    now = utcnow()
    available = await claimable(session, cutoff=cutoff_for(now, now), period_end=now, partner_id=partner_id)
    for (_, currency), group in available.items():
        out.setdefault(currency, PartnerBalance(currency)).available = group.amount
    for b in out.values():
        b.in_holding = b.owed - b.held - b.in_batches - b.available
        b.pending = b.in_holding + b.in_batches
    return [out[c] for c in sorted(out)]


# ---- reconciliation ----------------------------------------------------------------------------

SENT = ("sending", "paid", "reversed")


async def reconcile_batch(session: AsyncSession, batch: PayoutBatch) -> dict[str, Any]:
    """Compare the batch's lines with Stripe's transfers in its transfer group; store and return the report."""
    lines = await batch_lines(session, batch.id)
    transfers = await list_transfers(batch.id)
    by_line = {line.id: line for line in lines}
    matched: set[str] = set()
    differences: list[dict[str, Any]] = []
    transfer_by_line: dict[str, Any] = {}
    for transfer in transfers:
        line_id = _line_of(transfer)
        line = by_line.get(line_id or "") or next(
            (ln for ln in lines if ln.stripe_transfer_id and ln.stripe_transfer_id == _get(transfer, "id")), None)
        if line is None or line.status not in SENT:
            differences.append({"kind": "unexpected_at_stripe", "transfer_id": _get(transfer, "id"),
                                "line_id": line.id if line else line_id, "line_status": line.status if line else None,
                                "amount": _get(transfer, "amount"), "currency": _get(transfer, "currency"),
                                "detail": "Stripe has a transfer in this group that no sent line of ours accounts for."})
            continue
        if line.id in transfer_by_line:
            differences.append({"kind": "duplicate_at_stripe", "transfer_id": _get(transfer, "id"), "line_id": line.id,
                                "amount": _get(transfer, "amount"), "currency": _get(transfer, "currency"),
                                "detail": "More than one Stripe transfer for this line."})
            continue
        transfer_by_line[line.id] = transfer
        matched.add(line.id)
        checks = [("amount", line.amount, _get(transfer, "amount")),
                  ("currency", line.currency, _get(transfer, "currency")),
                  ("destination", line.destination, _get(transfer, "destination"))]
        if line.stripe_transfer_id:
            checks.append(("transfer_id", line.stripe_transfer_id, _get(transfer, "id")))
        for name, ours, theirs in checks:
            if ours != theirs:
                differences.append({"kind": f"{name}_mismatch", "line_id": line.id, "transfer_id": _get(transfer, "id"),
                                    "ours": ours, "stripe": theirs,
                                    "detail": f"The line's {name} is {ours!r}, Stripe's transfer says {theirs!r}."})
        reversed_ = int(_get(transfer, "amount_reversed") or 0)
        if reversed_ != line.amount_reversed:
            differences.append({"kind": "reversal_mismatch", "line_id": line.id, "transfer_id": _get(transfer, "id"),
                                "ours": line.amount_reversed, "stripe": reversed_,
                                "detail": "Stripe's reversed amount differs from ours (a transfer.reversed event "
                                          "not received yet?)."})
    for line in lines:
        if line.status in ("paid", "reversed") and line.id not in matched:
            differences.append({"kind": "missing_at_stripe", "line_id": line.id, "transfer_id": line.stripe_transfer_id,
                                "amount": line.amount, "currency": line.currency,
                                "detail": "We recorded this line as paid but Stripe lists no transfer for it."})
        elif line.status == "sending" and line.id not in matched:
            differences.append({"kind": "sending_without_transfer", "line_id": line.id, "amount": line.amount,
                                "currency": line.currency,
                                "detail": "The line is being sent but Stripe has no transfer yet (retried by the "
                                          "payouts maintenance job)."})
    now = utcnow()
    report = {"batch_id": batch.id, "checked_at": now.isoformat(), "ok": not differences,
              "lines_checked": sum(1 for line in lines if line.status in SENT), "stripe_transfers": len(transfers),
              "differences": differences}
    batch.reconciliation, batch.reconciled_at = report, now
    return report


async def batches_to_reconcile(session: AsyncSession, batch_id: str | None = None, days: int = 35) -> list[str]:
    if batch_id:
        await get_batch(session, batch_id)
        return [batch_id]
    since = utcnow() - timedelta(days=days)
    return list((await session.scalars(select(PayoutBatch.id).where(
        PayoutBatch.status == "approved", PayoutBatch.approved_at >= since).order_by(PayoutBatch.id))).all())


async def reconcile(sessionmaker: Any, batch_id: str | None = None) -> list[dict[str, Any]]:
    """Reconcile one batch, or every batch approved in the last 35 days (one transaction per batch)."""
    async with sessionmaker() as session:
        ids = await batches_to_reconcile(session, batch_id)
    reports = []
    for bid in ids:
        async with sessionmaker.begin() as session:
            batch = await get_batch(session, bid, lock=True)
            reports.append(await reconcile_batch(session, batch))
    return reports


async def stuck_lines(session: AsyncSession, older_than: timedelta) -> list[str]:
    """Lines approved or sending for longer than `older_than` (a lost enqueue or a crashed job)."""
    before = utcnow() - older_than
    return list((await session.scalars(select(PayoutLine.id).where(
        PayoutLine.status.in_(IN_FLIGHT), PayoutLine.updated_at <= before))).all())


async def partner_lines(session: AsyncSession, partner_id: str, limit: int = 20) -> list[PayoutLine]:
    """The partner's latest payout lines, newest first (their dashboard's payout history)."""
    return list((await session.scalars(select(PayoutLine).where(PayoutLine.partner_id == partner_id)
                                       .order_by(PayoutLine.id.desc()).limit(limit))).all())
