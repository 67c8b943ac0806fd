"""Stripe webhooks in: verify, store once in the inbox, acknowledge, handle in a job.

`POST /v1/stripe/webhook` verifies `Stripe-Signature` with `STRIPE_WEBHOOK_SECRET` (the SDK's
`WebhookSignature.verify_header`, 300 s tolerance), inserts the event into `stripe_events` keyed
by Stripe's event id (`ON CONFLICT DO NOTHING`: a redelivery is a no-op) and enqueues
`handle_stripe_event`. The job locks the row, skips it if already processed, and dispatches on the
type. A sweep re-enqueues rows left unprocessed (a lost enqueue, a crashed worker).

Dispatch is a registry: every domain's `tasks.py` may export
`STRIPE_HANDLERS = [("event.type", async_fn(session, event_dict)), …]` (a list of pairs, so that
`marketplace.registry.collect("tasks", "STRIPE_HANDLERS")` can concatenate them); several handlers
for one type all run, in registry order, in the same transaction. Unknown types are stored and
marked processed with `handled = false`. Handlers must be idempotent (they run once per event id,
but Stripe may send different events about the same object).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing.models import BillingCustomer, Invoice, PaymentAttempt, StripeEvent
from marketplace.billing.payments import apply_reversal, mark_failed, mark_paid, store_default_payment_method
from marketplace.core.db import utcnow
from marketplace.core.errors import BadRequest
from marketplace.core.stripe import payments_disabled, stripe_client
from marketplace.ledger import service as ledger
from marketplace.settings import get_settings

Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
TOLERANCE_SECONDS = 300


def verify(payload: bytes, signature: str | None) -> dict[str, Any]:
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise payments_disabled()
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, TOLERANCE_SECONDS)
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("The Stripe-Signature header does not verify for this body (or its timestamp is more than "
                         "300 seconds old). Check STRIPE_WEBHOOK_SECRET against the endpoint's signing secret.",
                         slug="invalid-stripe-signature", title="Invalid signature") from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise BadRequest("The body is not a Stripe event (it needs an id and a type).")
    return event


async def store(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Insert into the inbox; False if this event id was received before."""
    inserted = await session.scalar(insert(StripeEvent).values(
        id=event["id"], type=event["type"], payload=event, received_at=utcnow(), attempts=0, handled=False,
    ).on_conflict_do_nothing(index_elements=["id"]).returning(StripeEvent.id))
    return inserted is not None


def handlers() -> dict[str, list[Handler]]:
    from marketplace import registry

    table: dict[str, list[Handler]] = {}
    for item in registry.collect("tasks", "STRIPE_HANDLERS"):
        event_type, fn = item
        table.setdefault(event_type, []).append(fn)
    return table


async def process(session: AsyncSession, event_id: str) -> str:
    row = await session.get(StripeEvent, event_id, with_for_update=True)
    if row is None:
        return "missing"
    if row.processed_at is not None:
        return "already-processed"
    row.attempts += 1
    fns = handlers().get(row.type, [])
    for fn in fns:
        await fn(session, row.payload)
    row.handled = bool(fns)
    row.processed_at = utcnow()
    return "handled" if fns else "ignored"


# ---- billing's handlers -------------------------------------------------------------------------

def _object(event: dict[str, Any]) -> dict[str, Any]:
    return dict((event.get("data") or {}).get("object") or {})


async def _invoice_for_intent(session: AsyncSession, intent: dict[str, Any]) -> Invoice | None:
    invoice_id = (intent.get("metadata") or {}).get("invoice_id")
    if invoice_id:
        return await session.get(Invoice, invoice_id, with_for_update=True)
    if intent.get("id"):
        return await session.scalar(select(Invoice).where(Invoice.stripe_payment_intent_id == intent["id"])
                                    .with_for_update())
    return None


async def on_checkout_session_completed(session: AsyncSession, event: dict[str, Any]) -> None:
    checkout = _object(event)
    if checkout.get("mode") != "setup" or not checkout.get("setup_intent"):
        return
    setup_intent_id = checkout["setup_intent"]
    if isinstance(setup_intent_id, dict):
        setup_intent_id = setup_intent_id.get("id")
    intent = await stripe_client().v1.setup_intents.retrieve_async(setup_intent_id)
    payment_method = intent.payment_method
    if not isinstance(payment_method, str):
        payment_method = getattr(payment_method, "id", None)
    consumer_id = (checkout.get("metadata") or {}).get("consumer_id")
    if not consumer_id and checkout.get("customer"):
        consumer_id = await session.scalar(select(BillingCustomer.consumer_id)
                                           .where(BillingCustomer.stripe_customer_id == checkout["customer"]))
    if not consumer_id or not payment_method:
        return
    await store_default_payment_method(session, consumer_id, payment_method)
    # A new card: retry this consumer's failed invoices now rather than at the next scheduled retry.
    failed = (await session.scalars(select(Invoice).where(Invoice.consumer_id == consumer_id,
                                                          Invoice.status == "failed"))).all()
    for invoice in failed:
        invoice.next_attempt_at = utcnow()
        session.info.setdefault("charge", set()).add(invoice.id)  # enqueued after the commit


async def on_payment_intent_succeeded(session: AsyncSession, event: dict[str, Any]) -> None:
    intent = _object(event)
    invoice = await _invoice_for_intent(session, intent)
    if invoice is None:
        return
    charge = intent.get("latest_charge")
    charge_id = charge if isinstance(charge, str) else (charge or {}).get("id")
    receipt = None if isinstance(charge, str) else (charge or {}).get("receipt_url")
    await mark_paid(session, invoice, payment_intent_id=intent.get("id"), charge_id=charge_id, receipt_url=receipt)
    session.info.setdefault("sync_block", set()).add(invoice.subscription_id)


async def on_payment_intent_failed(session: AsyncSession, event: dict[str, Any]) -> None:
    intent = _object(event)
    invoice = await _invoice_for_intent(session, intent)
    if invoice is None:
        return
    attempt_id = (intent.get("metadata") or {}).get("payment_attempt_id")
    if attempt_id:
        attempt = await session.get(PaymentAttempt, attempt_id)
        if attempt is not None and attempt.status == "failed":
            return  # this attempt's failure was already recorded when the charge call answered
    message = ((intent.get("last_payment_error") or {}).get("message")) or "The payment failed."
    await mark_failed(session, invoice, message=message, payment_intent_id=intent.get("id"))


async def _invoice_for_charge(session: AsyncSession, charge: dict[str, Any]) -> Invoice | None:
    intent = charge.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    conditions = []
    if intent:
        conditions.append(Invoice.stripe_payment_intent_id == intent)
    if charge.get("id"):
        conditions.append(Invoice.stripe_charge_id == charge["id"])
    invoice_id = (charge.get("metadata") or {}).get("invoice_id")
    if invoice_id:
        return await session.get(Invoice, invoice_id, with_for_update=True)
    for condition in conditions:
        found = await session.scalar(select(Invoice).where(condition).with_for_update())
        if found is not None:
            return found
    return None


async def on_charge_refunded(session: AsyncSession, event: dict[str, Any]) -> None:
    charge = _object(event)
    invoice = await _invoice_for_charge(session, charge)
    if invoice is None:
        return
    # amount_refunded is cumulative on the charge, so out-of-order or repeated events are harmless.
    await apply_reversal(session, invoice, kind="refund", cumulative=int(charge.get("amount_refunded") or 0),
                         reference=f"{charge.get('id')}:{int(charge.get('amount_refunded') or 0)}")


async def on_charge_dispute_created(session: AsyncSession, event: dict[str, Any]) -> None:
    dispute = _object(event)
    charge_id = dispute.get("charge")
    invoice = await _invoice_for_charge(session, {"id": charge_id, "payment_intent": dispute.get("payment_intent")})
    if invoice is None:
        return
    await apply_reversal(session, invoice, kind="dispute",
                         cumulative=invoice.amount_disputed + int(dispute.get("amount") or 0),
                         reference=str(dispute.get("id")))


async def on_charge_dispute_closed(session: AsyncSession, event: dict[str, Any]) -> None:
    """A dispute we won gives the money back: the dispute's ledger transaction is reversed."""
    dispute = _object(event)
    if dispute.get("status") != "won":
        return  # lost: the dispute's reversal of the split stands
    invoice = await _invoice_for_charge(session, {"id": dispute.get("charge"),
                                                  "payment_intent": dispute.get("payment_intent")})
    if invoice is None:
        return
    posted = await ledger.reverse(session, kind="dispute", reference=str(dispute.get("id")),
                                  reversal_kind="dispute.won")
    if posted is not None:
        invoice.amount_disputed = max(0, invoice.amount_disputed - int(dispute.get("amount") or 0))


STRIPE_HANDLERS: list[tuple[str, Handler]] = [
    ("checkout.session.completed", on_checkout_session_completed),
    ("payment_intent.succeeded", on_payment_intent_succeeded),
    ("payment_intent.payment_failed", on_payment_intent_failed),
    ("charge.refunded", on_charge_refunded),
    ("charge.dispute.created", on_charge_dispute_created),
    ("charge.dispute.closed", on_charge_dispute_closed),
]
