"""Payout batches from the ledger, operator review, Stripe transfers sent exactly once (respx through
the real SDK), reversals, refunds after payout, partner balances, reconciliation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import respx
from sqlalchemy import func, select

from marketplace.core.db import utcnow
from marketplace.core.events import Event
from marketplace.ledger import service as ledger
from payouts import service, tasks
from payouts.models import PayoutClaim, PayoutLine
from tests.billing.factories import form, make_operator, signed, stripe_event
from tests.helpers import Api, User, assert_problem
from tests.payouts.factories import FakeTransfers, Seller, paid_invoice, seller

BASE = "/v1/admin/payout-batches"


def now_iso() -> str:
    return utcnow().isoformat()


async def create_batch(api: Api, operator: User, period_end: str | None = None) -> dict[str, Any]:
    response = await api.client.post(BASE, json={"period_end": period_end or now_iso()}, headers=operator.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def lines_of(batch: dict[str, Any], *sellers: Seller) -> dict[tuple[str, str], dict[str, Any]]:
    ids = {s.partner_id for s in sellers}
    return {(ln["partner_id"], ln["currency"]): ln for ln in batch["lines"] if ln["partner_id"] in ids}


async def ledger_balances(api: Api, operator: User) -> dict[tuple[str, str, str], int]:
    body = (await api.client.get("/v1/admin/ledger/balance", headers=operator.headers)).json()
    assert all(total["sum"] == 0 for total in body["totals"]), body["totals"]  # balanced per currency
    return {(a["kind"], a["owner_id"], a["currency"]): a["balance"] for a in body["accounts"]}


async def approve(api: Api, operator: User, batch_id: str) -> dict[str, Any]:
    response = await api.client.post(f"{BASE}/{batch_id}/approve", headers=operator.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def balance(api: Api, who: Seller) -> dict[str, dict[str, int]]:
    response = await api.client.get(f"/v1/partners/{who.partner_id}/balance", headers=who.owner.headers)
    assert response.status_code == 200, response.text
    return {b["currency"]: b for b in response.json()["balances"]}


async def deliver(api: Api, event: dict[str, Any]) -> None:
    body, headers = signed(event)
    assert (await api.client.post("/v1/stripe/webhook", content=body, headers=headers)).status_code == 200


async def test_a_batch_pays_each_partner_and_currency_what_the_ledger_owes(
        api: Api, sessionmaker: Any) -> None:
    operator = await make_operator(api, sessionmaker)
    a, b = await seller(api, sessionmaker, name="Alpha"), await seller(api, sessionmaker, name="Beta")
    unboarded = await seller(api, sessionmaker, onboarded=False, name="Gamma")
    small = await seller(api, sessionmaker, name="Delta")
    inv_a1 = await paid_invoice(sessionmaker, a, total=10000, days_ago=20)
    inv_a2 = await paid_invoice(sessionmaker, a, total=3333, days_ago=9, fee_percent=15)
    inv_a_eur = await paid_invoice(sessionmaker, a, total=5000, currency="eur", days_ago=8)
    await paid_invoice(sessionmaker, a, total=7000, days_ago=2)  # still in the holding period (7 days)
    await paid_invoice(sessionmaker, b, total=2500, days_ago=30)
    await paid_invoice(sessionmaker, unboarded, total=9000, days_ago=30)
    await paid_invoice(sessionmaker, small, total=100, days_ago=30)  # share 80 < PAYOUT_MINIMUM_AMOUNT 100

    batch = await create_batch(api, operator)
    assert batch["status"] == "pending_review" and batch["id"].startswith("pob_")
    mine = lines_of(batch, a, b, unboarded, small)
    async with sessionmaker() as session:
        payables = await ledger.partner_payables(session, up_to=utcnow() - timedelta(days=7))
    for key in [(a.partner_id, "usd"), (a.partner_id, "eur"), (b.partner_id, "usd")]:
        line = mine[key]
        assert line["status"] == "pending_review" and line["reason"] is None
        assert line["amount"] == payables[key], key  # the ledger's partner payable, holding period respected
        assert line["gross"] == line["amount"] + line["platform_fee"]
        assert set(line) >= {"id", "partner_id", "gross", "platform_fee", "amount", "currency", "status"}
    # 10000 at 20 % → 8000; 3333 at 15 % → 2833 (largest remainder: 499.95 → 500 fee)
    assert mine[(a.partner_id, "usd")]["amount"] == 8000 + 2833
    assert mine[(a.partner_id, "usd")]["gross"] == 13333
    assert mine[(a.partner_id, "usd")]["invoice_ids"] == sorted([inv_a1.id, inv_a2.id])
    assert mine[(a.partner_id, "eur")]["invoice_ids"] == [inv_a_eur.id]
    assert mine[(unboarded.partner_id, "usd")]["status"] == "carried_over"
    assert "onboarding" in mine[(unboarded.partner_id, "usd")]["reason"]
    assert mine[(small.partner_id, "usd")]["status"] == "carried_over"
    assert "minimum" in mine[(small.partner_id, "usd")]["reason"] and mine[(small.partner_id, "usd")]["amount"] == 80

    got = (await api.client.get(f"{BASE}/{batch['id']}", headers=operator.headers)).json()
    assert got["lines"] == batch["lines"] and got["totals"]
    listed = (await api.client.get(f"{BASE}?limit=1", headers=operator.headers)).json()
    assert listed["data"][0]["id"] == batch["id"] and "has_more" in listed
    for url in (f"{BASE}/{batch['id']}.csv", f"{BASE}/{batch['id']}?format=csv"):
        csv = await api.client.get(url, headers=operator.headers)
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("line_id,batch_id,partner_id")
        assert mine[(a.partner_id, "usd")]["id"] in csv.text
    async with sessionmaker() as session:
        events = (await session.scalars(select(Event).where(Event.type == "payout.batch_created",
                                                            Event.partner_id == a.partner_id))).all()
    assert len(events) == 2 and {e.data["batch_id"] for e in events} == {batch["id"]}

    # A second batch claims none of the same earnings; carried-over lines come again with their reason.
    again = lines_of(await create_batch(api, operator), a, b, unboarded, small)
    assert set(again) == {(unboarded.partner_id, "usd"), (small.partner_id, "usd")}
    assert (await balance(api, a))["usd"] == {
        "currency": "usd", "earned": 8000 + 2833 + 5600, "pending": 8000 + 2833 + 5600, "in_holding": 5600,
        "in_batches": 8000 + 2833, "held": 0, "paid_out": 0, "available": 0}
    await ledger_balances(api, operator)


async def test_hold_release_and_approve_twice_send_exactly_one_transfer_per_line(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    a, b = await seller(api, sessionmaker), await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, a, total=10000)
    await paid_invoice(sessionmaker, b, total=5000, currency="eur")
    batch = await create_batch(api, operator)
    line_a, line_b = lines_of(batch, a)[(a.partner_id, "usd")], lines_of(batch, b)[(b.partner_id, "eur")]

    hold_url = f"{BASE}/{batch['id']}/lines/{line_b['id']}/hold"
    assert_problem(await api.client.post(hold_url, json={"reason": "  "}, headers=operator.headers), 422)
    assert_problem(await api.client.post(hold_url, json={}, headers=operator.headers), 422)
    held = await api.client.post(hold_url, json={"reason": "Verify bank details"}, headers=operator.headers)
    assert held.json()["status"] == "held" and held.json()["reason"] == "Verify bank details"
    released = await api.client.post(f"{BASE}/{batch['id']}/lines/{line_b['id']}/release", headers=operator.headers)
    assert released.json()["status"] == "pending_review" and released.json()["reason"] is None
    await api.client.post(hold_url, json={"reason": "Verify bank details"}, headers=operator.headers)
    assert (await balance(api, b))["eur"]["held"] == 4000

    first = await approve(api, operator, batch["id"])
    second = await approve(api, operator, batch["id"])  # safe twice
    assert first["batch"]["status"] in ("processing", "partially_approved")
    assert second["batch"]["approved_by"] == [operator.id]
    await run_jobs()
    await approve(api, operator, batch["id"])  # and after the jobs ran
    await run_jobs()

    calls = fake.creates_for(line_a["id"])
    assert len(calls) == 1 and not fake.creates_for(line_b["id"])
    request = calls[0].request
    assert request.headers["idempotency-key"] == f"payout-line-{line_a['id']}"
    sent = form(request)
    assert sent["transfer_group"] == batch["id"] and sent["destination"] == a.account
    assert sent["amount"] == "8000" and sent["currency"] == "usd"
    body = (await api.client.get(f"{BASE}/{batch['id']}", headers=operator.headers)).json()
    by_id = {ln["id"]: ln for ln in body["lines"]}
    assert by_id[line_a["id"]]["status"] == "paid" and by_id[line_a["id"]]["stripe_transfer_id"].startswith("tr_")
    assert by_id[line_b["id"]]["status"] == "held" and by_id[line_b["id"]]["reason"] == "Verify bank details"
    balances = await ledger_balances(api, operator)
    assert balances[("partner_payable", a.partner_id, "usd")] == 0  # paid out in full
    assert (await balance(api, a))["usd"]["paid_out"] == 8000
    async with sessionmaker() as session:
        paid = (await session.scalars(select(Event).where(Event.type == "payout.paid",
                                                          Event.partner_id == a.partner_id))).all()
    assert len(paid) == 1 and paid[0].data["transfer_id"] == by_id[line_a["id"]]["stripe_transfer_id"]

    # Released later, approved again: the held line goes out too, once.
    await api.client.post(f"{BASE}/{batch['id']}/lines/{line_b['id']}/release", headers=operator.headers)
    await approve(api, operator, batch["id"])
    await run_jobs()
    assert len(fake.creates_for(line_b["id"])) == 1 and len(fake.creates_for(line_a["id"])) == 1
    assert_problem(await api.client.post(hold_url, json={"reason": "too late"}, headers=operator.headers), 409)
    assert (await ledger_balances(api, operator))[("partner_payable", b.partner_id, "eur")] == 0


async def test_concurrent_approvals_and_concurrent_batches_pay_each_line_once(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator, other = await make_operator(api, sessionmaker), await make_operator(api, sessionmaker)
    sellers = [await seller(api, sessionmaker) for _ in range(3)]
    for who in sellers:
        await paid_invoice(sessionmaker, who, total=4000)
        await paid_invoice(sessionmaker, who, total=6000, days_ago=12)

    responses = await asyncio.gather(*[api.client.post(BASE, json={"period_end": now_iso()}, headers=user.headers)
                                       for user in (operator, other, operator)])
    assert all(r.status_code in (201, 422) for r in responses), [r.text for r in responses]
    batches = [r.json() for r in responses if r.status_code == 201]
    payable_lines = [ln for batch in batches for ln in lines_of(batch, *sellers).values()
                     if ln["status"] == "pending_review"]
    assert sorted(ln["partner_id"] for ln in payable_lines) == sorted(s.partner_id for s in sellers)
    assert all(ln["amount"] == 8000 for ln in payable_lines)
    async with sessionmaker() as session:
        claimed = (await session.execute(select(PayoutClaim.ledger_transaction_id, func.count())
                                         .join(PayoutLine, PayoutLine.id == PayoutClaim.line_id)
                                         .where(PayoutLine.partner_id.in_([s.partner_id for s in sellers]))
                                         .group_by(PayoutClaim.ledger_transaction_id))).all()
    assert len(claimed) == 6 and all(n == 1 for _, n in claimed)

    batch_ids = {ln["batch_id"] for ln in payable_lines}
    results = await asyncio.gather(*[api.client.post(f"{BASE}/{bid}/approve", headers=user.headers)
                                     for bid in batch_ids for user in (operator, other, operator)])
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    await run_jobs()
    for line in payable_lines:
        calls = fake.creates_for(line["id"])
        assert len(calls) == 1 and calls[0].request.headers["idempotency-key"] == f"payout-line-{line['id']}"
    balances = await ledger_balances(api, operator)
    assert all(balances[("partner_payable", s.partner_id, "usd")] == 0 for s in sellers)


async def test_a_job_retried_after_a_crash_makes_no_second_transfer(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any, worker_ctx: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]

    real = service.record_result

    async def crash(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("worker killed after Stripe answered")

    monkeypatch.setattr(service, "record_result", crash)
    await approve(api, operator, batch["id"])
    await run_jobs()
    async with sessionmaker() as session:
        assert (await session.get(PayoutLine, line["id"])).status == "sending"
    assert len(fake.creates_for(line["id"])) == 1

    monkeypatch.setattr(service, "record_result", real)
    assert await tasks.send_payout(worker_ctx, line["id"]) == "paid"  # the retry finds the transfer at Stripe
    assert await tasks.send_payout(worker_ctx, line["id"]) == "paid"  # and a duplicate job does nothing
    assert len(fake.creates_for(line["id"])) == 1 and fake.list.called
    async with sessionmaker() as session:
        row = await session.get(PayoutLine, line["id"])
        assert row.status == "paid" and row.stripe_transfer_id in fake.transfers
    assert (await ledger_balances(api, operator))[("partner_payable", who.partner_id, "usd")] == 0


async def test_a_transfer_failure_is_surfaced_with_stripes_reason_and_the_amount_comes_back(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    message = "Your destination account needs to have at least one of the following capabilities enabled: transfers"
    fake.failing[who.account or ""] = message
    await paid_invoice(sessionmaker, who, total=3000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    await approve(api, operator, batch["id"])
    await run_jobs()

    body = (await api.client.get(f"{BASE}/{batch['id']}", headers=operator.headers)).json()
    failed = next(ln for ln in body["lines"] if ln["id"] == line["id"])
    assert failed["status"] == "failed" and failed["reason"] == message
    async with sessionmaker() as session:
        events = (await session.scalars(select(Event).where(Event.type == "payout.failed",
                                                            Event.partner_id == who.partner_id))).all()
    assert len(events) == 1 and events[0].data["failure_message"] == message
    payouts = (await api.client.get(f"/v1/partners/{who.partner_id}/payouts", headers=who.owner.headers)).json()
    assert [(p["status"], p["reason"]) for p in payouts["data"]] == [("failed", message)]
    assert (await ledger_balances(api, operator))[("partner_payable", who.partner_id, "usd")] == -2400  # still owed

    fake.failing.clear()  # the partner fixed its account: the next batch pays the same earnings
    retry = lines_of(await create_batch(api, operator), who)[(who.partner_id, "usd")]
    assert retry["status"] == "pending_review" and retry["amount"] == 2400


async def test_a_refund_after_payout_is_carried_as_a_negative_balance_into_the_next_batch(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    invoice = await paid_invoice(sessionmaker, who, total=5000)  # share 4000
    first = await create_batch(api, operator)
    await approve(api, operator, first["id"])
    await run_jobs()
    assert (await balance(api, who))["usd"]["paid_out"] == 4000

    # The consumer is refunded in full after the payout (billing's real charge.refunded handler).
    await deliver(api, stripe_event("charge.refunded", {"id": invoice.stripe_charge_id, "object": "charge",
                                                        "amount": 5000, "amount_refunded": 5000,
                                                        "metadata": {"invoice_id": invoice.id}}))
    await run_jobs()
    assert (await ledger_balances(api, operator))[("partner_payable", who.partner_id, "usd")] == 4000  # owes us
    negative = lines_of(await create_batch(api, operator), who)[(who.partner_id, "usd")]
    assert negative["status"] == "carried_over" and negative["amount"] == -4000
    assert "negative balance" in negative["reason"].lower()
    assert (await balance(api, who))["usd"]["available"] == -4000

    await paid_invoice(sessionmaker, who, total=10000, days_ago=8)  # share 8000
    netted = lines_of(await create_batch(api, operator), who)[(who.partner_id, "usd")]
    assert netted["status"] == "pending_review" and netted["amount"] == 8000 - 4000
    assert netted["gross"] == 10000 - 5000
    await approve(api, operator, netted["batch_id"])
    await run_jobs()
    assert len(fake.creates_for(netted["id"])) == 1 and form(fake.creates_for(netted["id"])[0].request)["amount"] == "4000"
    balances = await ledger_balances(api, operator)
    assert balances[("partner_payable", who.partner_id, "usd")] == 0
    final = (await balance(api, who))["usd"]
    assert final["earned"] == 8000 and final["paid_out"] == 8000 and final["available"] == 0


async def test_a_reversed_transfer_returns_the_amount_to_the_partners_balance(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2500)  # share 2000
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    await approve(api, operator, batch["id"])
    await run_jobs()
    transfer = fake.transfers[fake.by_key[f"payout-line-{line['id']}"]]
    reversed_ = {**transfer, "amount_reversed": 2000, "reversed": True}
    event = stripe_event("transfer.reversed", reversed_)
    await deliver(api, event)
    await deliver(api, stripe_event("transfer.reversed", reversed_))  # Stripe says it twice
    await run_jobs()

    body = (await api.client.get(f"{BASE}/{batch['id']}", headers=operator.headers)).json()
    row = next(ln for ln in body["lines"] if ln["id"] == line["id"])
    assert row["status"] == "reversed" and row["amount_reversed"] == 2000
    assert (await ledger_balances(api, operator))[("partner_payable", who.partner_id, "usd")] == -2000
    bal = (await balance(api, who))["usd"]
    assert bal["paid_out"] == 0 and bal["available"] == 2000 and bal["earned"] == 2000
    again = lines_of(await create_batch(api, operator), who)[(who.partner_id, "usd")]
    assert again["status"] == "pending_review" and again["amount"] == 2000 and again["platform_fee"] == 0


async def test_a_second_operator_must_approve_batches_above_the_threshold(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from marketplace.settings import get_settings

    fake = FakeTransfers(stripe_on)
    monkeypatch.setattr(get_settings(), "payout_second_approval_above", 1000)
    first_op, second_op = await make_operator(api, sessionmaker), await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=5000)
    batch = await create_batch(api, first_op)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    body = await approve(api, first_op, batch["id"])
    assert body["awaiting_second_approval"] is True and body["batch"]["status"] == "awaiting_second_approval"
    assert_problem(await api.client.post(f"{BASE}/{batch['id']}/approve", headers=first_op.headers), 409,
                   contains="different operator")
    await run_jobs()
    assert not fake.creates_for(line["id"])
    body = await approve(api, second_op, batch["id"])
    assert body["batch"]["approved_by"] == [first_op.id, second_op.id] and body["enqueued"] >= 1
    await run_jobs()
    assert len(fake.creates_for(line["id"])) == 1


async def test_reconciliation_reports_differences_with_stripe(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any, worker_ctx: Any) -> None:
    from click.testing import CliRunner

    from marketplace.cli import main

    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    a, b = await seller(api, sessionmaker), await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, a, total=3000)
    await paid_invoice(sessionmaker, b, total=4000)
    batch = await create_batch(api, operator)
    await approve(api, operator, batch["id"])
    await run_jobs()
    clean = (await api.client.post(f"{BASE}/{batch['id']}/reconcile", headers=operator.headers)).json()
    assert clean["ok"] is True and clean["differences"] == [] and clean["lines_checked"] >= 2

    line_a = lines_of(batch, a)[(a.partner_id, "usd")]
    fake.transfers[fake.by_key[f"payout-line-{line_a['id']}"]]["amount"] = 1  # Stripe disagrees on the amount
    fake.transfers["tr_stray"] = {"id": "tr_stray", "object": "transfer", "amount": 999, "currency": "usd",
                                  "destination": "acct_someone", "transfer_group": batch["id"], "amount_reversed": 0,
                                  "metadata": {}}
    report = (await api.client.post(f"{BASE}/{batch['id']}/reconcile", headers=operator.headers)).json()
    kinds = {(d["kind"], d.get("line_id") or d.get("transfer_id")) for d in report["differences"]}
    assert ("amount_mismatch", line_a["id"]) in kinds and ("unexpected_at_stripe", "tr_stray") in kinds
    assert report["ok"] is False

    job = await tasks.reconcile_payouts(worker_ctx, batch["id"])
    assert job == {"batches": 1, "differences": 2}
    result = await asyncio.to_thread(CliRunner().invoke, main, ["reconcile-payouts", "--batch", batch["id"]])
    assert result.exit_code == 1, result.output
    assert "amount_mismatch" in result.output and "tr_stray" in result.output
    page = (await api.client.get(f"{BASE}/{batch['id']}", headers=operator.headers)).json()
    assert page["reconciliation"]["ok"] is False


async def test_partners_see_their_balance_and_payouts_and_nobody_elses(api: Api, sessionmaker: Any) -> None:
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=1000, days_ago=1)
    bal = await balance(api, who)
    assert bal["usd"]["earned"] == 800 and bal["usd"]["in_holding"] == 800 and bal["usd"]["available"] == 0
    page = (await api.client.get(f"/v1/partners/{who.partner_id}/payouts?limit=5",
                                 headers=who.owner.headers)).json()
    assert page == {"data": [], "has_more": False, "next_cursor": None}
    stranger = await api.signup()
    for path in ("balance", "payouts"):
        assert_problem(await api.client.get(f"/v1/partners/{who.partner_id}/{path}", headers=stranger.headers), 404)
    assert_problem(await api.client.get(f"/v1/partners/{who.partner_id}/payouts?status=nope",
                                        headers=who.owner.headers), 422)
    assert_problem(await api.client.get(f"/v1/partners/{who.partner_id}/payouts?starting_after=%00",
                                        headers=who.owner.headers), 422)


async def test_non_operators_get_404_on_every_admin_path(api: Api, sessionmaker: Any) -> None:
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    user = await api.signup()
    calls = [("POST", BASE, {"period_end": now_iso()}), ("GET", BASE, None), ("GET", f"{BASE}/{batch['id']}", None),
             ("GET", f"{BASE}/{batch['id']}.csv", None), ("GET", f"{BASE}/{batch['id']}?format=csv", None),
             ("POST", f"{BASE}/{batch['id']}/lines/{line['id']}/hold", {"reason": "x"}),
             ("POST", f"{BASE}/{batch['id']}/lines/{line['id']}/release", None),
             ("POST", f"{BASE}/{batch['id']}/approve", None), ("POST", f"{BASE}/{batch['id']}/reconcile", None)]
    for method, url, body in calls:
        assert_problem(await api.client.request(method, url, json=body, headers=user.headers), 404)
        assert (await api.client.request(method, url, json=body)).status_code == 401
    # The page: a signed-in non-operator gets a 404 page; a visitor is sent to log in.
    login = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery",
                                                  "next": "/admin/payouts"})
    cookie = {"Cookie": f"mkt_session={login.cookies['mkt_session']}"}
    api.client.cookies.clear()  # the shared client must not stay signed in
    for method, url in [("GET", "/admin/payouts"), ("GET", f"/admin/payouts/{batch['id']}"),
                        ("GET", f"/admin/payouts/{batch['id']}/export.csv"), ("POST", f"/admin/payouts/{batch['id']}/approve"),
                        ("POST", f"/admin/payouts/{batch['id']}/lines/{line['id']}/hold"),
                        ("POST", f"/admin/payouts/{batch['id']}/lines/{line['id']}/release"),
                        ("POST", f"/admin/payouts/{batch['id']}/reconcile"), ("POST", "/admin/payouts")]:
        response = await api.client.request(method, url, headers=cookie)
        assert response.status_code == 404 and "Page not found" in response.text, (url, response.status_code)
        anonymous = await api.client.request(method, url)
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    async with sessionmaker() as session:
        row = await session.get(PayoutLine, line["id"])
        assert row.status == "pending_review"


async def test_bad_inputs_answer_problems(api: Api, sessionmaker: Any) -> None:
    operator = await make_operator(api, sessionmaker)
    h = operator.headers
    assert_problem(await api.client.post(BASE, json={}, headers=h), 422)
    assert_problem(await api.client.post(BASE, json={"period_end": "yesterday"}, headers=h), 422)
    assert_problem(await api.client.post(BASE, json={"period_end": "2026-11-01T00:00:00"}, headers=h), 422,
                   contains="time zone")
    future = (utcnow() + timedelta(days=3)).isoformat()
    assert_problem(await api.client.post(BASE, json={"period_end": future}, headers=h), 422, contains="future")
    assert_problem(await api.client.post(BASE, json={"period_end": now_iso(), "x": 1}, headers=h), 422)
    assert_problem(await api.client.post(BASE, content=b"{", headers={**h, "Content-Type": "application/json"}), 400)
    assert_problem(await api.client.post(BASE, json={"period_end": "2000-01-01T00:00:00Z"}, headers=h), 422,
                   contains="nothing to pay out")
    assert_problem(await api.client.get(f"{BASE}/pob_nope", headers=h), 404)
    assert_problem(await api.client.get(f"{BASE}?starting_after=DROP%20TABLE", headers=h), 422)
    assert_problem(await api.client.post(f"{BASE}/pob_nope/approve", headers=h), 404)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    assert_problem(await api.client.get(f"{BASE}/{batch['id']}?format=xml", headers=h), 422)
    assert_problem(await api.client.post(f"{BASE}/{batch['id']}/lines/po_nope/hold", json={"reason": "x"},
                                         headers=h), 404)
    assert_problem(await api.client.post(f"{BASE}/pob_other/lines/{line['id']}/hold", json={"reason": "x"},
                                         headers=h), 404)
    assert_problem(await api.client.post(f"{BASE}/{batch['id']}/lines/{line['id']}/hold",
                                         json={"reason": "x" * 501}, headers=h), 422)
    assert (await api.client.post(f"{BASE}/{batch['id']}/lines/{line['id']}/release", headers=h)).status_code == 200
    async with sessionmaker() as session:
        carried = await session.scalar(select(PayoutLine).where(PayoutLine.batch_id == batch["id"],
                                                                PayoutLine.status == "carried_over"))
    if carried is not None:
        assert_problem(await api.client.post(f"{BASE}/{batch['id']}/lines/{carried.id}/hold", json={"reason": "x"},
                                             headers=h), 409)


async def test_payments_off_leaves_approved_lines_for_later(api: Api, sessionmaker: Any, run_jobs: Any) -> None:
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    await approve(api, operator, batch["id"])
    await run_jobs()
    async with sessionmaker() as session:
        assert (await session.get(PayoutLine, line["id"])).status == "approved"  # sent once Stripe is configured
    # An approved line whose transfer has not started can still be held; its job then does nothing.
    held = await api.client.post(f"{BASE}/{batch['id']}/lines/{line['id']}/hold", json={"reason": "Wait"},
                                 headers=operator.headers)
    assert held.status_code == 200 and held.json()["status"] == "held"
    async with sessionmaker() as session:
        assert await service.prepare_send(session, line["id"]) == "held"


async def test_a_suspended_partner_is_carried_over_and_an_approved_line_fails_if_suspended_before_sending(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    from sqlalchemy import update

    from partners.models import Partner

    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    who = await seller(api, sessionmaker)
    await paid_invoice(sessionmaker, who, total=2000)
    batch = await create_batch(api, operator)
    line = lines_of(batch, who)[(who.partner_id, "usd")]
    async with sessionmaker.begin() as session:
        await session.execute(update(Partner).where(Partner.id == who.partner_id).values(status="suspended"))
    await approve(api, operator, batch["id"])
    await run_jobs()
    async with sessionmaker() as session:
        row = await session.get(PayoutLine, line["id"])
        assert row.status == "failed" and "suspended" in row.reason
    assert not fake.creates_for(line["id"])
    carried = lines_of(await create_batch(api, operator), who)[(who.partner_id, "usd")]
    assert carried["status"] == "carried_over" and "suspended" in carried["reason"] and carried["amount"] == 1600
    await ledger_balances(api, operator)
