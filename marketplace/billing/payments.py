"""Stripe payments: a customer per consumer, the setup Checkout Session, off-session charges,
and what payment outcomes do to invoices, subscriptions, the ledger and the gateway's block key.

Charging (documented choice): we charge our own invoices with **PaymentIntents**, one per payment
attempt — `amount`, `currency`, `customer`, the default `payment_method`, `confirm=true`,
`off_session=true`, `metadata={invoice_id, payment_attempt_id}`, idempotency key
`payment-{attempt id}`. The attempt row is committed before Stripe is called, and a job retried
after a crash reuses the pending attempt (same key), so one attempt can never charge twice. A
success marks the invoice paid at once (the `payment_intent.succeeded` webhook then finds it paid
and does nothing); a decline marks it failed and the subscription `past_due`; the platform retries
failed invoices every `BILLING_RETRY_HOURS` (and at once when a new card is saved) up to
`BILLING_MAX_ATTEMPTS`. After `BILLING_GRACE_DAYS` past due the subscription becomes `unpaid` and
the gateway refuses it (the block key); a later success makes it `active` and removes the key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import stripe
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from marketplace.billing.models import BillingCustomer, Budget, Invoice, InvoiceLine, PaymentAttempt
from marketplace.billing.service import invoice_event
from marketplace.core import cache
from marketplace.core import redis as rkeys
from marketplace.core.db import utcnow
from marketplace.core.errors import PaymentRequired
from marketplace.core.events import publish
from marketplace.core.stripe import idempotency_key, stripe_client
from marketplace.ledger import service as ledger
from marketplace.settings import get_settings
from marketplace.subscriptions.models import Subscription


def _value(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, None)


# ---- customers and payment methods ------------------------------------------------------------

async def customer_row(session: AsyncSession, consumer_id: str) -> BillingCustomer:
    """The consumer's billing row, created if missing, locked for this transaction (two concurrent
    setups wait for each other instead of creating two Stripe customers)."""
    now = utcnow()
    await session.execute(insert(BillingCustomer).values(consumer_id=consumer_id, created_at=now, updated_at=now)
                          .on_conflict_do_nothing(index_elements=["consumer_id"]))
    row = await session.scalar(select(BillingCustomer).where(BillingCustomer.consumer_id == consumer_id)
                               .with_for_update().execution_options(populate_existing=True))
    assert row is not None
    return row


async def ensure_stripe_customer(session: AsyncSession, consumer_id: str, email: str | None = None) -> BillingCustomer:
    row = await customer_row(session, consumer_id)
    if row.stripe_customer_id is None:
        params: dict[str, Any] = {"metadata": {"consumer_id": consumer_id}}
        if email:
            params["email"] = email
        customer = await stripe_client().v1.customers.create_async(
            params, options={"idempotency_key": idempotency_key("customer", consumer_id)})  # type: ignore[arg-type]
        row.stripe_customer_id = customer.id
    return row


async def setup_checkout_url(session: AsyncSession, consumer_id: str, email: str | None) -> str:
    """A Checkout Session in setup mode for the consumer's Stripe customer: where they save a card."""
    row = await ensure_stripe_customer(session, consumer_id, email)
    base = get_settings().base_url.rstrip("/")
    attempt = f"{consumer_id}-{str(ULID()).lower()}"
    checkout = await stripe_client().v1.checkout.sessions.create_async({
        "mode": "setup", "customer": row.stripe_customer_id,
        "payment_method_types": ["card"],
        "success_url": f"{base}/dashboard?setup=success", "cancel_url": f"{base}/dashboard?setup=canceled",
        "metadata": {"consumer_id": consumer_id},
    }, options={"idempotency_key": idempotency_key("setup", attempt)})  # type: ignore[arg-type]
    return str(checkout.url)


async def has_payment_method(session: AsyncSession, consumer_id: str) -> bool:
    return bool(await session.scalar(select(BillingCustomer.default_payment_method)
                                     .where(BillingCustomer.consumer_id == consumer_id)))


async def require_payment_method(session: AsyncSession, consumer_id: str) -> None:
    """For the subscriptions domain: 402 unless the consumer has a default payment method."""
    if not await has_payment_method(session, consumer_id):
        raise PaymentRequired("This plan is paid and you have no payment method on file. Call POST /v1/billing/setup "
                              "to save a card through Stripe Checkout, then subscribe again.",
                              slug="payment-method-required")


async def store_default_payment_method(session: AsyncSession, consumer_id: str, payment_method: str) -> None:
    row = await customer_row(session, consumer_id)
    row.default_payment_method = payment_method
    if row.stripe_customer_id:
        await stripe_client().v1.customers.update_async(
            row.stripe_customer_id, {"invoice_settings": {"default_payment_method": payment_method}})


# ---- the block key ------------------------------------------------------------------------------

def block_key(subscription_id: str) -> str:
    return rkeys.key("block", subscription_id)


UNPAID_DETAIL = ("This subscription is unpaid: the last invoice could not be charged. Update your card with "
                 "POST /v1/billing/setup; the platform retries the payment and lets calls through once it succeeds.")


def budget_detail(amount: int, currency: str) -> str:
    return (f"This subscription reached its monthly budget hard cap ({amount} {currency.upper()} minor units). "
            "Raise the budget with PUT /v1/subscriptions/{id}/budget or turn off hard_cap to continue.")


async def sync_block(session: AsyncSession, redis: Redis, subscription_id: str) -> str | None:
    """Make the gateway's block key match the database: unpaid first, then a budget hard cap."""
    status = await session.scalar(select(Subscription.status).where(Subscription.id == subscription_id))
    detail: str | None = None
    if status == "unpaid":
        detail = UNPAID_DETAIL
    else:
        budget = await session.scalar(select(Budget).where(Budget.subscription_id == subscription_id))
        if budget is not None and budget.hard_cap and budget.capped and status != "canceled":
            detail = budget_detail(budget.monthly_amount, budget.currency).replace("{id}", subscription_id)
    if detail:
        await redis.set(block_key(subscription_id), detail)
    else:
        await redis.delete(block_key(subscription_id))
    return detail


# ---- charging -----------------------------------------------------------------------------------

async def prepare_attempt(session: AsyncSession, invoice_id: str) -> PaymentAttempt | None:
    """Lock the invoice; reuse a pending attempt or create one. None when there is nothing to charge."""
    invoice = await session.get(Invoice, invoice_id, with_for_update=True)
    if invoice is None or invoice.status not in ("open", "failed") or invoice.total <= 0:
        return None
    pending = await session.scalar(select(PaymentAttempt).where(
        PaymentAttempt.invoice_id == invoice_id, PaymentAttempt.status.in_(("pending", "processing"))))
    if pending is not None:
        return pending
    attempt = PaymentAttempt(id=f"pay_{str(ULID()).lower()}", invoice_id=invoice_id, amount=invoice.total,
                             currency=invoice.currency, status="pending", created_at=utcnow())
    session.add(attempt)
    invoice.attempt_count += 1
    invoice.next_attempt_at = None
    return attempt


async def call_stripe(session: AsyncSession, attempt: PaymentAttempt) -> tuple[str, Any]:
    """Create (or, with the same key, fetch again) the PaymentIntent; ("succeeded"|"failed"|"processing"|"no_method", obj)."""
    invoice = await session.get(Invoice, attempt.invoice_id)
    assert invoice is not None
    customer = await session.get(BillingCustomer, invoice.consumer_id)
    if customer is None or not customer.default_payment_method or not customer.stripe_customer_id:
        return "no_method", None
    try:
        intent = await stripe_client().v1.payment_intents.create_async({
            "amount": attempt.amount, "currency": attempt.currency, "customer": customer.stripe_customer_id,
            "payment_method": customer.default_payment_method, "confirm": True, "off_session": True,
            "description": f"Invoice #{invoice.number}", "expand": ["latest_charge"],
            "metadata": {"invoice_id": invoice.id, "payment_attempt_id": attempt.id},
        }, options={"idempotency_key": idempotency_key("payment", attempt.id)})  # type: ignore[arg-type]
    except stripe.CardError as exc:
        error = exc.error
        return "failed", {"message": str(_value(error, "message") or exc.user_message or "card declined"),
                          "payment_intent": _value(_value(error, "payment_intent"), "id")}
    except stripe.StripeError as exc:
        # Not a decline (network, rate limit, Stripe outage…): keep the attempt pending and retry it
        # later with the same idempotency key, so Stripe answers with the same PaymentIntent.
        return "error", {"message": f"{type(exc).__name__}: {exc.user_message or 'Stripe request failed'}"}
    status = _value(intent, "status")
    if status == "succeeded":
        return "succeeded", intent
    if status in ("requires_payment_method", "canceled"):
        last = _value(intent, "last_payment_error")
        return "failed", {"message": str(_value(last, "message") or f"payment {status}"), "payment_intent": intent.id}
    return "processing", intent


async def mark_paid(session: AsyncSession, invoice: Invoice, *, payment_intent_id: str | None,
                    charge_id: str | None = None, receipt_url: str | None = None) -> bool:
    """open/failed → paid: split the lines, post to the ledger, reactivate the subscription. Idempotent."""
    if invoice.status == "paid":
        if receipt_url and not invoice.receipt_url:
            invoice.receipt_url = receipt_url
        return False
    if invoice.status not in ("open", "failed"):
        return False
    amounts = (await session.scalars(select(InvoiceLine.amount).where(InvoiceLine.invoice_id == invoice.id))).all()
    fee, share = ledger.split_lines(amounts, invoice.platform_fee_percent)
    now = utcnow()
    await ledger.post_invoice_paid(session, invoice_id=invoice.id, consumer_id=invoice.consumer_id,
                                   partner_id=invoice.partner_id, currency=invoice.currency, total=invoice.total,
                                   fee=fee, share=share, at=now)
    invoice.status, invoice.paid_at, invoice.next_attempt_at, invoice.failure_message = "paid", now, None, None
    invoice.platform_fee_amount, invoice.partner_amount = fee, share
    invoice.stripe_payment_intent_id = payment_intent_id or invoice.stripe_payment_intent_id
    invoice.stripe_charge_id = charge_id or invoice.stripe_charge_id
    invoice.receipt_url = receipt_url or invoice.receipt_url
    await session.execute(update(PaymentAttempt).where(
        PaymentAttempt.invoice_id == invoice.id, PaymentAttempt.status.in_(("pending", "processing")))
        .values(status="succeeded", payment_intent_id=payment_intent_id))
    publish(session, "invoice.paid", invoice_event(invoice), consumer_id=invoice.consumer_id)
    await _maybe_reactivate(session, invoice.subscription_id)
    return True


async def _maybe_reactivate(session: AsyncSession, subscription_id: str) -> None:
    unpaid = await session.scalar(select(func.count()).select_from(Invoice).where(
        Invoice.subscription_id == subscription_id, Invoice.status == "failed"))
    sub = await session.get(Subscription, subscription_id, with_for_update=True)
    if sub is not None and not unpaid and sub.status in ("past_due", "unpaid"):
        sub.status, sub.past_due_since = "active", None
        sub.revision += 1
        cache.invalidate_after_commit(session, "subscription", sub.id)


async def mark_failed(session: AsyncSession, invoice: Invoice, *, message: str,
                      payment_intent_id: str | None = None) -> bool:
    """A charge failed: invoice failed (retried later), subscription past_due. Idempotent per attempt."""
    if invoice.status not in ("open", "failed"):
        return False
    settings = get_settings()
    now = utcnow()
    invoice.status, invoice.failure_message = "failed", message
    invoice.stripe_payment_intent_id = payment_intent_id or invoice.stripe_payment_intent_id
    invoice.next_attempt_at = (now + timedelta(hours=settings.billing_retry_hours)
                               if invoice.attempt_count < settings.billing_max_attempts else None)
    await session.execute(update(PaymentAttempt).where(
        PaymentAttempt.invoice_id == invoice.id, PaymentAttempt.status.in_(("pending", "processing")))
        .values(status="failed", error=message, payment_intent_id=payment_intent_id))
    sub = await session.get(Subscription, invoice.subscription_id, with_for_update=True)
    if sub is not None and sub.status == "active":
        sub.status, sub.past_due_since = "past_due", now
        sub.revision += 1
        cache.invalidate_after_commit(session, "subscription", sub.id)
    publish(session, "invoice.payment_failed", {**invoice_event(invoice), "failure_message": message,
                                                "attempt_count": invoice.attempt_count},
            consumer_id=invoice.consumer_id)
    return True


async def record_outcome(session: AsyncSession, attempt_id: str, outcome: str, obj: Any) -> Invoice | None:
    attempt = await session.get(PaymentAttempt, attempt_id)
    if attempt is None:
        return None
    invoice = await session.get(Invoice, attempt.invoice_id, with_for_update=True)
    assert invoice is not None
    if outcome == "succeeded":
        charge = _value(obj, "latest_charge")
        await mark_paid(session, invoice, payment_intent_id=_value(obj, "id"),
                        charge_id=charge if isinstance(charge, str) else _value(charge, "id"),
                        receipt_url=None if isinstance(charge, str) else _value(charge, "receipt_url"))
    elif outcome == "failed":
        await mark_failed(session, invoice, message=obj["message"], payment_intent_id=obj.get("payment_intent"))
    elif outcome == "error":
        attempt.error = obj["message"]
        invoice.next_attempt_at = utcnow() + timedelta(minutes=15)
    elif outcome == "no_method":
        attempt.status = "failed"
        attempt.error = "no payment method"
        await mark_failed(session, invoice, message="No payment method on file. Save one with POST /v1/billing/setup.")
    else:
        attempt.status, attempt.payment_intent_id = "processing", _value(obj, "id")
        invoice.stripe_payment_intent_id = _value(obj, "id")
    return invoice


async def charge_invoice(sessionmaker: Any, redis: Redis, invoice_id: str) -> str:
    """Charge one invoice off-session (three short transactions around the Stripe call)."""
    async with sessionmaker.begin() as session:
        attempt = await prepare_attempt(session, invoice_id)
        attempt_id = attempt.id if attempt is not None else None
    if attempt_id is None:
        return "nothing-to-charge"
    async with sessionmaker() as session:
        attempt = await session.get(PaymentAttempt, attempt_id)
        assert attempt is not None
        outcome, obj = await call_stripe(session, attempt)
    async with sessionmaker.begin() as session:
        invoice = await record_outcome(session, attempt_id, outcome, obj)
        subscription_id = invoice.subscription_id if invoice is not None else None
    if subscription_id is not None:  # after the commit: the gateway follows committed state only
        async with sessionmaker() as session:
            await sync_block(session, redis, subscription_id)
    return outcome


# ---- refunds and disputes -------------------------------------------------------------------------

class PaymentNotRecordedYet(Exception):
    """A refund or dispute for an invoice whose payment we have not recorded yet: retried later."""


async def apply_reversal(session: AsyncSession, invoice: Invoice, *, kind: str, cumulative: int, reference: str) -> bool:
    """Refund or dispute taking the invoice's cumulative `kind` amount to `cumulative`; reverses the split."""
    if invoice.status in ("open", "failed"):
        # Stripe events arrive out of order (the charge's own success event may still be on its
        # way): fail the handler so the inbox sweep retries it once the payment is recorded.
        raise PaymentNotRecordedYet(f"{kind} for invoice {invoice.id} arrived before its payment was recorded")
    if invoice.status != "paid":
        return False
    before = invoice.amount_refunded + invoice.amount_disputed
    previous = (invoice.amount_refunded, invoice.amount_disputed)
    if kind == "refund":
        if cumulative <= invoice.amount_refunded:
            return False
        invoice.amount_refunded = cumulative
    else:
        if cumulative <= invoice.amount_disputed:
            return False
        invoice.amount_disputed = cumulative
    after = invoice.amount_refunded + invoice.amount_disputed
    posted = await ledger.post_reversal(session, kind=kind, reference=reference, invoice_id=invoice.id,
                                        partner_id=invoice.partner_id, currency=invoice.currency,
                                        fee=invoice.platform_fee_amount, share=invoice.partner_amount,
                                        reversed_before=before, reversed_after=after)
    if posted is None:  # this refund/dispute was recorded before
        invoice.amount_refunded, invoice.amount_disputed = previous
        return False
    return True
