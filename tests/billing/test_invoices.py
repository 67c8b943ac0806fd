"""Invoices, previews, quotes, budgets and the operator side, with payments off (no Stripe key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from marketplace.billing import service, tasks
from marketplace.billing.models import Invoice
from marketplace.billing.payments import block_key
from marketplace.core.events import Event
from marketplace.subscriptions.models import Subscription
from tests.billing.factories import FakeUsage, make_operator, make_world, utc
from tests.helpers import Api, assert_problem

START, END = utc(2026, 10, 1), utc(2026, 11, 1)


async def close(api: Api, operator: Any, period_end: str = "2026-11-01T00:00:00Z") -> dict[str, Any]:
    response = await api.client.post("/v1/admin/billing/close", json={"period_end": period_end},
                                     headers=operator.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def invoices_of(sessionmaker: Any, subscription_id: str) -> list[Invoice]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Invoice).where(Invoice.subscription_id == subscription_id)
                                           .order_by(Invoice.period_start))).all())


async def test_a_free_plan_closes_to_a_paid_zero_invoice_without_stripe(api: Api, sessionmaker: Any,
                                                                          usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END, monthly_fee=0, unit_pricing={})
    usage.add(world.subscription_id, utc(2026, 10, 2), 10**6)
    await close(api, operator)
    [invoice] = await invoices_of(sessionmaker, world.subscription_id)
    assert invoice.status == "paid" and invoice.total == 0 and invoice.usage_units == 10**6


async def test_invoice_numbers_are_sequential_and_closing_twice_creates_nothing(api: Api, sessionmaker: Any,
                                                                               usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    a = await make_world(api, sessionmaker, period_start=START, period_end=END)
    b = await make_world(api, sessionmaker, period_start=START, period_end=END)
    await close(api, operator)
    await close(api, operator)
    [ia], [ib] = await invoices_of(sessionmaker, a.subscription_id), await invoices_of(sessionmaker, b.subscription_id)
    assert abs(ia.number - ib.number) >= 1 and ia.status == "open"  # payments off: stays open, never charged


async def test_cancel_at_period_end_ends_the_subscription_at_close(api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END)
    async with sessionmaker.begin() as session:
        await session.execute(update(Subscription).where(Subscription.id == world.subscription_id)
                              .values(cancel_at_period_end=True))
    await close(api, operator)
    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub.status == "canceled" and sub.current_period_end == END


async def test_late_usage_for_a_closed_period_goes_on_the_next_invoice(api: Api, sessionmaker: Any,
                                                                       usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=utc(2026, 8, 1), period_end=utc(2026, 9, 1), monthly_fee=0,
                             included_units=0,
                             unit_pricing={"model": "per_unit", "unit_amount": "2"})
    usage.add(world.subscription_id, utc(2026, 8, 10), 100)
    await close(api, operator, "2026-09-01T00:00:00Z")
    usage.add(world.subscription_id, utc(2026, 8, 31, 23), 7)  # flushed after the close
    usage.add(world.subscription_id, utc(2026, 9, 3), 10)
    await close(api, operator, "2026-10-01T00:00:00Z")
    first, second = await invoices_of(sessionmaker, world.subscription_id)
    assert first.total == 200
    async with sessionmaker() as session:
        from marketplace.billing.readside import invoice_lines

        lines = await invoice_lines(session, second.id)
    assert [(line.kind, line.quantity, line.amount) for line in lines] == [("usage", 10, 20), ("late_usage", 7, 14)]
    assert second.total == 34


async def test_a_mid_period_upgrade_is_prorated_by_day(api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=utc(2026, 9, 1), period_end=utc(2026, 10, 1),
                             monthly_fee=3000, unit_pricing={})
    other = await make_world(api, sessionmaker, period_start=utc(2026, 9, 1), period_end=utc(2026, 10, 1),
                             monthly_fee=9000, unit_pricing={})
    async with sessionmaker.begin() as session:
        await service.record_plan_change(session, world.subscription_id, world.plan_version_id,
                                         other.plan_version_id, at=utc(2026, 9, 11))
        await session.execute(update(Subscription).where(Subscription.id == world.subscription_id)
                              .values(plan_version_id=other.plan_version_id))
    await close(api, operator, "2026-10-01T00:00:00Z")
    [invoice] = await invoices_of(sessionmaker, world.subscription_id)
    # 10 of 30 days at 3,000 and 20 of 30 days at 9,000
    assert invoice.total == 1000 + 6000


async def test_preview_and_another_consumers_invoice(api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=START, period_end=END)
    usage.add(world.subscription_id, utc(2026, 10, 3), 3000)
    preview = await api.client.get(f"/v1/subscriptions/{world.subscription_id}/preview-invoice",
                                   headers=world.consumer.headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["total"] == 4900 + 1000 and preview.json()["billable_units"] == 2000
    stranger = await api.signup()
    assert_problem(await api.client.get(f"/v1/subscriptions/{world.subscription_id}/preview-invoice",
                                        headers=stranger.headers), 404)
    await close(api, operator)
    [invoice] = await invoices_of(sessionmaker, world.subscription_id)
    assert_problem(await api.client.get(f"/v1/invoices/{invoice.id}", headers=stranger.headers), 404)
    assert (await api.client.get("/v1/invoices", headers=stranger.headers)).json()["data"] == []
    mine = (await api.client.get(f"/v1/invoices/{invoice.id}", headers=world.consumer.headers)).json()
    assert mine["number"] == invoice.number and len(mine["lines"]) == 2


async def test_the_public_calculator_quotes_a_plan(api: Api, sessionmaker: Any) -> None:
    world = await make_world(api, sessionmaker, period_start=START, period_end=END, monthly_fee=4900,
                             included_units=50000, unit_pricing={"model": "graduated", "tiers": [
                                 {"up_to": 100000, "unit_amount": "0.1"}, {"up_to": None, "unit_amount": "0.05"}]})
    response = await api.client.post(f"/v1/catalog/plans/{world.plan_id}/quote", json={"units": 250000})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 4900 + 10000 + 5000
    assert_problem(await api.client.post(f"/v1/catalog/plans/{world.plan_id}/quote", json={"units": -1}), 422)
    assert_problem(await api.client.post(f"/v1/catalog/plans/{world.plan_id}/quote", json={"units": "many"}), 422)
    bad = await api.client.post(f"/v1/catalog/plans/{world.plan_id}/quote", content=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert bad.status_code in (400, 422) and bad.headers["content-type"].startswith("application/problem+json")
    assert_problem(await api.client.post("/v1/catalog/plans/pln_nope/quote", json={"units": 1}), 404)


async def test_admin_paths_are_404_for_non_operators_and_inputs_are_checked(api: Api, sessionmaker: Any) -> None:
    user = await api.signup()
    for method, path, body in [("POST", "/v1/admin/billing/close", {"period_end": "2026-11-01T00:00:00Z"}),
                               ("GET", "/v1/admin/metrics", None), ("GET", "/v1/admin/ledger/balance", None),
                               ("POST", "/v1/admin/invoices/in_x/void", None)]:
        assert_problem(await api.client.request(method, path, json=body, headers=user.headers), 404)
    operator = await make_operator(api, sessionmaker)
    assert_problem(await api.client.post("/v1/admin/billing/close", json={"period_end": "yesterday"},
                                         headers=operator.headers), 422)
    assert_problem(await api.client.post("/v1/admin/billing/close", json={"period_end": "2026-11-01T00:00:00"},
                                         headers=operator.headers), 422)
    assert_problem(await api.client.post("/v1/admin/billing/close", json={}, headers=operator.headers), 422)
    metrics = (await api.client.get("/v1/admin/metrics", headers=operator.headers)).json()
    assert {"by_currency", "active_partners", "active_consumers"} <= set(metrics)


async def test_budget_thresholds_fire_once_and_the_hard_cap_blocks_until_raised(
        api: Api, sessionmaker: Any, usage: FakeUsage, redis: Any, worker_ctx: dict[str, Any]) -> None:
    from marketplace.core.db import utcnow

    now = utcnow()
    world = await make_world(api, sessionmaker, period_start=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
                             period_end=service.add_month(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)),
                             monthly_fee=0, included_units=0, unit_pricing={"model": "per_unit", "unit_amount": "1"})
    sub_id = world.subscription_id
    usage.add(sub_id, now.replace(day=1, hour=1), 850)
    path = f"/v1/subscriptions/{sub_id}/budget"
    response = await api.client.put(path, json={"monthly_amount": 1000, "currency": "usd", "hard_cap": True},
                                    headers=world.consumer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["notified_thresholds"] == [50, 80] and response.json()["capped"] is False
    assert await redis.get(block_key(sub_id)) is None

    usage.add(sub_id, now.replace(day=1, hour=2), 200)
    await tasks.evaluate_budgets(worker_ctx)
    await tasks.evaluate_budgets(worker_ctx)
    detail = await redis.get(block_key(sub_id))
    assert detail is not None and b"budget" in detail and sub_id.encode() in detail
    async with sessionmaker() as session:
        events = (await session.scalars(select(Event).where(Event.type == "usage.threshold_reached",
                                                            Event.consumer_id == world.consumer.id))).all()
    assert sorted(e.data["threshold"] for e in events if e.data.get("kind") == "budget") == [50, 80, 100]  # once each

    raised = await api.client.put(path, json={"monthly_amount": 5000, "currency": "usd", "hard_cap": True},
                                  headers=world.consumer.headers)
    assert raised.json()["capped"] is False and await redis.get(block_key(sub_id)) is None

    assert_problem(await api.client.put(path, json={"monthly_amount": 5000, "currency": "eur"},
                                        headers=world.consumer.headers), 422)
    assert_problem(await api.client.put(path, json={"monthly_amount": 0, "currency": "usd"},
                                        headers=world.consumer.headers), 422)
    stranger = await api.signup()
    assert_problem(await api.client.put(path, json={"monthly_amount": 5000, "currency": "usd"},
                                        headers=stranger.headers), 404)


async def test_the_cron_job_closes_periods_and_lifts_a_budget_cap_at_the_roll(
        api: Api, sessionmaker: Any, usage: FakeUsage, redis: Any, worker_ctx: dict[str, Any]) -> None:
    world = await make_world(api, sessionmaker, period_start=utc(2026, 8, 1), period_end=utc(2026, 9, 1),
                             monthly_fee=0, included_units=0, unit_pricing={"model": "per_unit", "unit_amount": "1"})
    from marketplace.billing import budgets
    from marketplace.billing.models import Budget

    usage.add(world.subscription_id, utc(2026, 8, 2), 500)
    async with sessionmaker.begin() as session:
        sub = await session.get(Subscription, world.subscription_id)
        budget = await budgets.set_budget(session, sub, monthly_amount=100, currency="usd", alert_thresholds=None,
                                          hard_cap=True)
        budget.capped = True
        await session.flush()
        from marketplace.billing.payments import sync_block

        await sync_block(session, redis, sub.id)
    assert await redis.get(block_key(world.subscription_id)) is not None
    result = await tasks.close_periods(worker_ctx, "2026-09-01T00:00:00+00:00")
    assert result["closed"] >= 1
    assert await redis.get(block_key(world.subscription_id)) is None
    async with sessionmaker() as session:
        budget = await session.scalar(select(Budget).where(Budget.subscription_id == world.subscription_id))
        assert budget.capped is False and budget.period_start == utc(2026, 9, 1)
    [invoice] = await invoices_of(sessionmaker, world.subscription_id)
    assert invoice.total == 500


async def test_operators_void_unpaid_invoices_and_lists_paginate(api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    operator = await make_operator(api, sessionmaker)
    world = await make_world(api, sessionmaker, period_start=utc(2026, 7, 1), period_end=utc(2026, 8, 1))
    await close(api, operator, "2026-08-01T00:00:00Z")
    await close(api, operator, "2026-09-01T00:00:00Z")
    page = (await api.client.get("/v1/invoices?limit=1", headers=world.consumer.headers)).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    rest = (await api.client.get(f"/v1/invoices?limit=5&starting_after={page['next_cursor']}",
                                 headers=world.consumer.headers)).json()
    assert len(rest["data"]) == 1 and rest["data"][0]["period_start"] < page["data"][0]["period_start"]
    voided = await api.client.post(f"/v1/admin/invoices/{page['data'][0]['id']}/void", headers=operator.headers)
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    again = await api.client.post(f"/v1/admin/invoices/{page['data'][0]['id']}/void", headers=operator.headers)
    assert_problem(again, 422, contains="void")
    balances = (await api.client.get("/v1/admin/ledger/balance", headers=operator.headers)).json()
    receivable = [a for a in balances["accounts"] if a["kind"] == "consumer_receivable" and a["owner_id"] == world.consumer.id]
    assert receivable[0]["balance"] == 4900  # one open invoice left; the voided one reversed


async def test_the_calculator_quotes_every_pricing_model_published_through_the_api(api: Api) -> None:
    from tests.publishing.helpers import complete, draft, plan_body, post_ok

    d = await draft(api)
    pro = await complete(api, d)  # API.md's example plan: 4,900 + graduated 0.1 / 0.05 past 50,000 included
    plans = {"pro": pro["id"]}
    for name, pricing in {"volume": {"model": "volume", "tiers": [{"up_to": 10000, "unit_amount": "1"},
                                                                  {"up_to": None, "unit_amount": "0.5"}]},
                          "unit": {"model": "per_unit", "unit_amount": "0.2"},
                          "package": {"model": "package", "package_size": 1000, "unit_amount": "50"}}.items():
        body = plan_body(name=name, monthly_fee=0, included_units=0, unit_pricing=pricing)
        plans[name] = (await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", body))["id"]
    plans["free"] = (await post_ok(api, d.user, f"/v1/apis/{d.id}/plans",
                                   plan_body(name="free", monthly_fee=0, included_units=0, unit_pricing=None)))["id"]
    unpublished = await api.client.post(f"/v1/catalog/plans/{plans['pro']}/quote", json={"units": 1})
    assert_problem(unpublished, 404)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/publish", status=200)
    expected = {"pro": 4900 + 10000 + 5000, "volume": 125000, "unit": 50000, "package": 250 * 50, "free": 0}
    for name, total in expected.items():
        response = await api.client.post(f"/v1/catalog/plans/{plans[name]}/quote", json={"units": 250000})
        assert response.status_code == 200, response.text
        assert response.json()["total"] == total, (name, response.json())


async def test_closing_with_a_period_end_in_the_future_is_refused_and_invoices_nothing(
        api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    from datetime import timedelta

    from marketplace.core.db import utcnow

    operator = await make_operator(api, sessionmaker)
    now = utcnow()
    world = await make_world(api, sessionmaker, period_start=now - timedelta(days=5),
                             period_end=now + timedelta(days=25))
    future = (now + timedelta(days=400)).isoformat()
    response = await api.client.post("/v1/admin/billing/close", json={"period_end": future},
                                     headers=operator.headers)
    assert_problem(response, 422, contains="future")
    assert await invoices_of(sessionmaker, world.subscription_id) == []
    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub is not None and sub.current_period_end > now  # not rolled ahead


async def test_closing_with_an_out_of_range_period_end_is_a_422(api: Api, sessionmaker: Any) -> None:
    operator = await make_operator(api, sessionmaker)
    response = await api.client.post("/v1/admin/billing/close", json={"period_end": "0001-01-01T00:00:00+14:00"},
                                     headers=operator.headers)
    assert_problem(response, 422)


async def test_cancelling_now_still_invoices_the_usage_and_the_days_used_of_the_final_period(
        api: Api, sessionmaker: Any, usage: FakeUsage) -> None:
    from datetime import timedelta

    from marketplace.core.db import utcnow

    operator = await make_operator(api, sessionmaker)
    now = utcnow()
    start = now - timedelta(days=10)
    world = await make_world(api, sessionmaker, period_start=start, period_end=start + timedelta(days=30),
                             monthly_fee=3000, included_units=0, unit_pricing={"model": "per_unit", "unit_amount": "2"})
    usage.add(world.subscription_id, now - timedelta(days=2), 50)
    canceled = await api.client.delete(f"/v1/subscriptions/{world.subscription_id}?now=true",
                                       headers=world.consumer.headers)
    assert canceled.status_code in (200, 204), canceled.text
    await close(api, operator, utcnow().isoformat())
    [invoice] = await invoices_of(sessionmaker, world.subscription_id)
    # 50 units x 2 = 100 of usage, and 10 of 30 days of the 3000 fee
    assert invoice.usage_amount == 100 and invoice.total == 100 + 1000, (invoice.total, invoice.usage_amount)
    assert invoice.period_end <= utcnow()
    await close(api, operator, utcnow().isoformat())
    assert len(await invoices_of(sessionmaker, world.subscription_id)) == 1
    async with sessionmaker() as session:
        sub = await session.get(Subscription, world.subscription_id)
        assert sub is not None and sub.status == "canceled"
