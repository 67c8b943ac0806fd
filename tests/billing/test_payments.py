"""From usage to a paid invoice to ledger entries, through Stripe (respx) and its webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import select, update

from marketplace.billing import tasks
from marketplace.billing.models import Invoice
from marketplace.core.db import utcnow
from marketplace.subscriptions.models import Subscription
from tests.billing.factories import (
    FakeUsage,
    World,
    form,
    idempotency_keys,
    make_operator,
    make_world,
    signed,
    stripe_event,
    utc,
)
from tests.helpers import Api, User, assert_problem

START, END = utc(2026, 10, 1), utc(2026, 11, 1)
RECEIPT = "https://pay.stripe.test/receipts/ch_1"


def mock_stripe(router: respx.MockRouter, *, decline: bool = False) -> dict[str, respx.Route]:
    routes = {
        "customer": router.post("/v1/customers").mock(side_effect=lambda request: httpx.Response(
            200, json={"id": "cus_" + form(request)["metadata[consumer_id]"][-12:], "object": "customer"})),
        "customer_update": router.post(url__regex=r"/v1/customers/cus_\w+").mock(return_value=httpx.Response(
            200, json={"id": "cus_test1", "object": "customer"})),
        "checkout": router.post("/v1/checkout/sessions").mock(return_value=httpx.Response(
            200, json={"id": "cs_test1", "object": "checkout.session", "url": "https://checkout.stripe.test/c/cs_test1"})),
        "setup_intent": router.get(url__regex=r"/v1/setup_intents/seti_\w+").mock(return_value=httpx.Response(
            200, json={"id": "seti_1", "object": "setup_intent", "payment_method": "pm_card_visa"})),
    }
    routes["payment_intent"] = router.post("/v1/payment_intents")
    set_charge_outcome(routes["payment_intent"], decline=decline)
    return routes


def set_charge_outcome(route: respx.Route, *, decline: bool) -> None:
    if decline:
        route.mock(return_value=httpx.Response(402, json={"error": {
            "type": "card_error", "code": "card_declined", "message": "Your card was declined.",
            "payment_intent": {"id": "pi_declined", "object": "payment_intent", "status": "requires_payment_method"}}}))
    else:
        route.mock(side_effect=lambda request: httpx.Response(200, json={
            "id": "pi_ok_" + form(request)["metadata[payment_attempt_id]"][-8:], "object": "payment_intent",
            "status": "succeeded", "amount": int(form(request)["amount"]),
            "metadata": {"invoice_id": form(request)["metadata[invoice_id]"]},
            "latest_charge": {"id": "ch_1", "object": "charge", "receipt_url": RECEIPT}}))


async def deliver(api: Api, event: dict[str, Any], **kw: Any) -> httpx.Response:
    body, headers = signed(event, **kw)
    return await api.client.post("/v1/stripe/webhook", content=body, headers=headers)


async def save_card(api: Api, world: World, run_jobs: Any) -> None:
    response = await api.client.post("/v1/billing/setup", headers=world.consumer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["checkout_url"].startswith("https://checkout.stripe.test/")
    event = stripe_event("checkout.session.completed", {"id": "cs_test1", "object": "checkout.session", "mode": "setup",
                                                       "customer": "cus_" + world.consumer.id[-12:], "setup_intent": "seti_1",
                                                       "metadata": {"consumer_id": world.consumer.id}})
    assert (await deliver(api, event)).status_code == 200
    await run_jobs()


async def close(api: Api, operator: User, period_end: str = "2026-11-01T00:00:00Z") -> dict[str, Any]:
    response = await api.client.post("/v1/admin/billing/close", json={"period_end": period_end},
                                     headers=operator.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def ledger(api: Api, operator: User) -> dict[tuple[str, str, str], int]:
    body = (await api.client.get("/v1/admin/ledger/balance", headers=operator.headers)).json()
    assert all(total["sum"] == 0 for total in body["totals"]), body["totals"]
    return {(a["kind"], a["owner_id"], a["currency"]): a["balance"] for a in body["accounts"]}


async def test_usage_to_a_paid_invoice_to_ledger_entries(api: Api, sessionmaker: Any, usage: FakeUsage,
                                                         stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    routes = mock_stripe(stripe_on)
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END)
    usage.add(world.subscription_id, utc(2026, 10, 5), 3000, path="/forecast/{city}", endpoint_id="ep_a")
    usage.add(world.subscription_id, utc(2026, 10, 9), 1000, path="/history", endpoint_id="ep_b")
    usage.add(world.subscription_id, utc(2026, 11, 2), 999)  # next period: not on this invoice

    before = (await api.client.get("/v1/billing/payment-method", headers=world.consumer.headers)).json()
    assert before == {"has_payment_method": False, "payment_method": None, "payments_enabled": True}
    await save_card(api, world, run_jobs)
    after = (await api.client.get("/v1/billing/payment-method", headers=world.consumer.headers)).json()
    assert after["has_payment_method"] is True and after["payment_method"] == "pm_card_visa"
    assert form(routes["customer_update"].calls.last.request)["invoice_settings[default_payment_method]"] == "pm_card_visa"

    closed = await close(api, operator)
    assert closed["subscriptions_closed"] >= 1 and len(closed["invoices"]) >= 1
    await run_jobs()

    invoices = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"]
    assert len(invoices) == 1
    invoice = (await api.client.get(f"/v1/invoices/{invoices[0]['id']}", headers=world.consumer.headers)).json()
    assert invoice["status"] == "paid" and invoice["receipt_url"] == RECEIPT
    # 4,000 units - 1,000 included = 3,000 x 0.5 = 1,500, shared 3:1 between the endpoints
    assert [(line["kind"], line["amount"], line["quantity"]) for line in invoice["lines"]] == [
        ("plan_fee", 4900, 1), ("usage", 1125, 3000), ("usage", 375, 1000)]
    assert invoice["total"] == 6400 and invoice["plan"]["monthly_fee"] == 4900

    # Every Stripe create carried an idempotency key derived from our row ids.
    keys = idempotency_keys(routes["customer"].calls) + idempotency_keys(routes["checkout"].calls) \
        + idempotency_keys(routes["payment_intent"].calls)
    assert keys and all(keys), keys
    assert keys[0] == f"customer-{world.consumer.id}"
    assert idempotency_keys(routes["payment_intent"].calls)[0].startswith("payment-pay_")
    charge = form(routes["payment_intent"].calls.last.request)
    assert charge["off_session"] == "true" and charge["confirm"] == "true" and charge["amount"] == "6400"
    assert charge["metadata[invoice_id]"] == invoice["id"] and charge["payment_method"] == "pm_card_visa"

    balances = await ledger(api, operator)
    # 20 % per line, largest remainder: 4900 → 980/3920, 1125 → 225/900, 375 → 75/300
    assert balances[("partner_payable", world.partner_id, "usd")] == -5120
    assert balances[("consumer_receivable", world.consumer.id, "usd")] == 0

    earnings = (await api.client.get(f"/v1/partners/{world.partner_id}/earnings",
                                     headers=world.partner_owner.headers)).json()
    assert earnings["payable"] == {"usd": 5120}
    assert earnings["data"][0]["gross"] == 6400 and earnings["data"][0]["partner_share"] == 5120
    stranger = await api.signup()
    assert_problem(await api.client.get(f"/v1/partners/{world.partner_id}/earnings", headers=stranger.headers), 404)

    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub.current_period_start == END and sub.current_period_end == utc(2026, 12, 1)

    # Closing the same period again creates nothing new.
    again = await close(api, operator)
    assert world.subscription_id not in str(again)
    async with sessionmaker() as session:
        count = len((await session.scalars(select(Invoice).where(
            Invoice.subscription_id == world.subscription_id))).all())
    assert count == 1

    # A webhook confirming the same payment changes nothing.
    pi = stripe_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent", "status": "succeeded",
                                                   "metadata": {"invoice_id": invoice["id"]}})
    assert (await deliver(api, pi)).status_code == 200
    await run_jobs()
    mine = {world.consumer.id, world.partner_id}
    after = await ledger(api, operator)
    assert {k: v for k, v in after.items() if k[1] in mine} == {k: v for k, v in balances.items() if k[1] in mine}


async def test_a_refund_reverses_the_split_proportionally(api: Api, sessionmaker: Any, usage: FakeUsage,
                                                          stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    mock_stripe(stripe_on)
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END, monthly_fee=10000,
                             unit_pricing={}, fee_percent=30)
    await save_card(api, world, run_jobs)
    await close(api, operator)
    await run_jobs()
    invoice = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"][0]
    assert invoice["status"] == "paid" and invoice["total"] == 10000
    before = await ledger(api, operator)
    assert before[("partner_payable", world.partner_id, "usd")] == -7000

    refund = stripe_event("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": "pi_unknown",
                                              "amount": 10000, "amount_refunded": 2501,
                                              "metadata": {"invoice_id": invoice["id"]}})
    await deliver(api, refund)
    await deliver(api, refund)  # the same event twice
    await run_jobs()
    after = await ledger(api, operator)
    # 2501 split 30:70 by largest remainder → 750.3/1750.7 → 750 / 1751
    assert after[("partner_payable", world.partner_id, "usd")] == -7000 + 1751
    assert after[("refunds", "", "usd")] - before.get(("refunds", "", "usd"), 0) == 750

    full = stripe_event("charge.refunded", {"id": "ch_1", "object": "charge", "amount": 10000,
                                            "amount_refunded": 10000, "metadata": {"invoice_id": invoice["id"]}})
    await deliver(api, full)
    await run_jobs()
    final = await ledger(api, operator)
    assert final[("partner_payable", world.partner_id, "usd")] == 0  # fully reversed, to the cent
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=world.consumer.headers)).json()
    assert body["amount_refunded"] == 10000


async def test_failed_payment_blocks_after_grace_and_a_later_success_unblocks(
        api: Api, sessionmaker: Any, usage: FakeUsage, stripe_on: respx.MockRouter, run_jobs: Any,
        redis: Any, worker_ctx: dict[str, Any]) -> None:
    routes = mock_stripe(stripe_on, decline=True)
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END)
    await save_card(api, world, run_jobs)
    await close(api, operator)
    await run_jobs()

    invoice = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"][0]
    assert invoice["status"] == "failed" and "declined" in invoice["failure_message"]
    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub.status == "past_due" and sub.past_due_since is not None
    from marketplace.billing.payments import block_key

    key = block_key(world.subscription_id)
    await tasks.billing_maintenance(worker_ctx)
    assert await redis.get(key) is None  # still inside the grace period

    async with sessionmaker.begin() as session:
        await session.execute(update(Subscription).where(Subscription.id == world.subscription_id)
                              .values(past_due_since=utcnow() - timedelta(days=4)))
    await tasks.billing_maintenance(worker_ctx)
    detail = await redis.get(key)
    assert detail is not None and b"POST /v1/billing/setup" in detail
    async with sessionmaker() as session:
        assert (await session.get(Subscription, world.subscription_id)).status == "unpaid"

    # The consumer saves a new card; the platform retries at once and the charge succeeds.
    set_charge_outcome(routes["payment_intent"], decline=False)
    await save_card(api, world, run_jobs)  # the new card triggers the retry at once
    await run_jobs()
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=world.consumer.headers)).json()
    assert body["status"] == "paid" and body["attempt_count"] == 2
    assert await redis.get(key) is None
    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub.status == "active" and sub.past_due_since is None
    keys = idempotency_keys(routes["payment_intent"].calls)
    assert len(set(keys)) == len(keys) == 2  # one key per attempt


async def test_forged_and_stale_stripe_events_are_refused(api: Api, stripe_on: respx.MockRouter) -> None:
    event = stripe_event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    forged = await deliver(api, event, secret="whsec_not_ours")
    assert_problem(forged, 400, contains="Stripe-Signature")
    stale = await deliver(api, event, timestamp=int(utcnow().timestamp()) - 301)
    assert_problem(stale, 400)
    missing = await api.client.post("/v1/stripe/webhook", content=b"{}")
    assert_problem(missing, 400)
    ok = await deliver(api, event)
    assert ok.status_code == 200 and ok.json() == {"received": True, "duplicate": False}


async def test_the_same_stripe_event_twice_is_stored_and_handled_once(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    from marketplace.billing.models import StripeEvent

    event = stripe_event("customer.created", {"id": "cus_9", "object": "customer"})
    first, second = await deliver(api, event), await deliver(api, event)
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    await run_jobs()
    async with sessionmaker() as session:
        row = await session.get(StripeEvent, event["id"])
        assert row.processed_at is not None and row.handled is False and row.attempts == 1


async def test_billing_endpoints_say_payments_are_off_without_a_stripe_key(api: Api) -> None:
    user = await api.signup()
    response = await api.client.post("/v1/billing/setup", headers=user.headers)
    assert_problem(response, 503, contains="STRIPE_SECRET_KEY")
    body, headers = signed(stripe_event("x.y", {}))
    assert_problem(await api.client.post("/v1/stripe/webhook", content=body, headers=headers), 503)


async def test_without_a_payment_method_the_invoice_fails_and_subscribing_needs_setup(
        api: Api, sessionmaker: Any, usage: FakeUsage, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    mock_stripe(stripe_on)
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END)
    from marketplace.billing.payments import require_payment_method
    from marketplace.core.errors import PaymentRequired

    async with sessionmaker() as session:
        try:
            await require_payment_method(session, world.consumer.id)
        except PaymentRequired as exc:
            assert "POST /v1/billing/setup" in exc.detail
        else:
            raise AssertionError("expected 402")
    await close(api, operator)
    await run_jobs()
    invoice = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"][0]
    assert invoice["status"] == "failed" and "/v1/billing/setup" in invoice["failure_message"]


async def test_a_stripe_outage_is_retried_with_the_same_key_and_a_dispute_reverses_the_split(
        api: Api, sessionmaker: Any, usage: FakeUsage, stripe_on: respx.MockRouter, run_jobs: Any,
        worker_ctx: dict[str, Any]) -> None:
    routes = mock_stripe(stripe_on)
    routes["payment_intent"].mock(return_value=httpx.Response(
        500, json={"error": {"type": "api_error", "message": "Stripe is having a moment"}},
        headers={"stripe-should-retry": "false"}))
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END, monthly_fee=999,
                             unit_pricing={}, fee_percent=10)
    await save_card(api, world, run_jobs)
    await close(api, operator)
    await run_jobs()
    invoice = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"][0]
    assert invoice["status"] == "open" and invoice["next_attempt_at"] is not None  # not a decline: retried later

    set_charge_outcome(routes["payment_intent"], decline=False)
    async with sessionmaker.begin() as session:
        await session.execute(update(Invoice).where(Invoice.id == invoice["id"])
                              .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    await tasks.billing_maintenance(worker_ctx)
    await run_jobs()
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=world.consumer.headers)).json()
    assert body["status"] == "paid" and body["attempt_count"] == 1
    keys = idempotency_keys(routes["payment_intent"].calls)
    assert len(keys) == 2 and keys[0] == keys[1]  # the same attempt, the same key: never two charges

    before = await ledger(api, operator)
    assert before[("partner_payable", world.partner_id, "usd")] == -899  # 999: fee 99.9 → 100, share 899
    dispute = stripe_event("charge.dispute.created", {"id": "dp_1", "object": "dispute", "charge": "ch_1",
                                                      "amount": 999, "payment_intent": body.get("id")})
    async with sessionmaker.begin() as session:  # the charge id is what Stripe's dispute points at
        await session.execute(update(Invoice).where(Invoice.id == invoice["id"]).values(stripe_charge_id="ch_dp_test"))
    dispute["data"]["object"]["charge"] = "ch_dp_test"
    await deliver(api, dispute)
    await deliver(api, dispute)
    await run_jobs()
    after = await ledger(api, operator)
    assert after[("partner_payable", world.partner_id, "usd")] == 0
    assert after[("disputes", "", "usd")] - before.get(("disputes", "", "usd"), 0) == 100
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=world.consumer.headers)).json()
    assert body["amount_disputed"] == 999

    won = stripe_event("charge.dispute.closed", {"id": "dp_1", "object": "dispute", "charge": "ch_dp_test",
                                                 "amount": 999, "status": "won"})
    await deliver(api, won)
    await run_jobs()
    settled = await ledger(api, operator)
    assert settled[("partner_payable", world.partner_id, "usd")] == -899  # the split is back
    assert settled[("disputes", "", "usd")] == before.get(("disputes", "", "usd"), 0)


async def test_stripe_handlers_are_collected_from_every_domain() -> None:
    from marketplace.billing.stripe_events import handlers

    table = handlers()
    for event_type in ("checkout.session.completed", "payment_intent.succeeded", "payment_intent.payment_failed",
                       "charge.refunded", "charge.dispute.created"):
        assert table[event_type], event_type


async def test_another_domains_stripe_event_is_dispatched_through_the_inbox(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    from partners.models import Partner

    owner = await api.signup()
    partner_id = (await api.partner(owner))["id"]
    account = "acct_" + partner_id[-10:]
    async with sessionmaker.begin() as session:
        await session.execute(update(Partner).where(Partner.id == partner_id).values(stripe_account_id=account))
    event = stripe_event("account.updated", {"id": account, "object": "account", "charges_enabled": True,
                                             "payouts_enabled": True, "requirements": {"currently_due": []}})
    assert (await deliver(api, event)).status_code == 200
    await run_jobs()
    partner = (await api.client.get(f"/v1/partners/{partner_id}", headers=owner.headers)).json()
    assert partner["payouts_enabled"] is True and partner["connect_status"] == "enabled"


async def test_a_failing_handler_leaves_the_event_for_the_sweep_with_its_error(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any, monkeypatch: Any) -> None:
    from marketplace.billing import stripe_events
    from marketplace.billing.models import StripeEvent

    async def broken(session: Any, event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(stripe_events, "handlers", lambda: {"test.broken": [broken]})
    event = stripe_event("test.broken", {"id": "x"})
    await deliver(api, event)
    await run_jobs()
    async with sessionmaker() as session:
        row = await session.get(StripeEvent, event["id"])
        assert row.processed_at is None and row.attempts == 1 and "boom" in row.error


async def test_a_refund_that_arrives_before_its_payment_is_recorded_is_retried_not_dropped(
        api: Api, sessionmaker: Any, usage: FakeUsage, stripe_on: respx.MockRouter, run_jobs: Any,
        worker_ctx: dict[str, Any]) -> None:
    from marketplace.billing.models import StripeEvent

    mock_stripe(stripe_on, decline=True)
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END, monthly_fee=10000,
                             unit_pricing={}, fee_percent=30)
    await save_card(api, world, run_jobs)
    await close(api, operator)
    await run_jobs()
    invoice = (await api.client.get("/v1/invoices", headers=world.consumer.headers)).json()["data"][0]
    assert invoice["status"] == "failed"

    refund = stripe_event("charge.refunded", {"id": "ch_early", "object": "charge", "amount": 10000,
                                              "amount_refunded": 1000, "metadata": {"invoice_id": invoice["id"]}})
    await deliver(api, refund)
    await run_jobs()
    async with sessionmaker() as session:
        stored = await session.get(StripeEvent, refund["id"])
        assert stored.processed_at is None and stored.attempts == 1 and "before its payment" in stored.error

    paid = stripe_event("payment_intent.succeeded", {"id": "pi_late", "object": "payment_intent",
                                                     "status": "succeeded", "amount": 10000, "currency": "usd",
                                                     "metadata": {"invoice_id": invoice["id"]}})
    await deliver(api, paid)
    await run_jobs()
    await tasks.handle_stripe_event(worker_ctx, refund["id"])  # what the inbox sweep does
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=world.consumer.headers)).json()
    assert body["status"] == "paid" and body["amount_refunded"] == 1000
    after = await ledger(api, operator)
    assert after[("partner_payable", world.partner_id, "usd")] == -7000 + 700
