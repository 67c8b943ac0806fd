"""Billing with the real neighbours: a plan published through the publishing API, a subscription
through the subscriptions API (402 until a card is saved), usage read from metering's rollups, and
a plan change through the API prorated on the next invoice."""

from __future__ import annotations

from typing import Any

import respx
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert

from marketplace.billing.models import PlanChange
from marketplace.metering.models import UsageRollup
from marketplace.subscriptions.models import Subscription
from tests.billing.factories import World, make_operator, utc
from tests.billing.test_payments import close, ledger, mock_stripe, save_card
from tests.helpers import Api, assert_problem
from tests.publishing.helpers import complete, draft, plan_body, post_ok


async def test_publish_subscribe_meter_close_pay_and_prorate_a_plan_change(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any) -> None:
    mock_stripe(stripe_on)
    operator = await make_operator(api, sessionmaker)
    d = await draft(api)
    pro = await complete(api, d, plan_body(included_units=1000, quota=None))  # 4,900 + graduated 0.1 / 0.05
    free = await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", plan_body(name="Free", monthly_fee=0,
                                                                          included_units=0, unit_pricing=None))
    await post_ok(api, d.user, f"/v1/apis/{d.id}/publish", status=200)
    endpoint = (await api.client.get(f"/v1/catalog/apis/{d.slug}")).json()["endpoints"][0]

    consumer = await api.signup("Consumer")
    refused = await api.client.post("/v1/subscriptions", json={"plan_id": pro["id"]}, headers=consumer.headers)
    assert_problem(refused, 402, contains="POST /v1/billing/setup")
    world = World(consumer=consumer, partner_owner=d.user, partner_id=d.partner_id, api_id=d.id, plan_id=pro["id"],
                  plan_version_id="", subscription_id="")
    await save_card(api, world, run_jobs)
    created = await api.client.post("/v1/subscriptions", json={"plan_id": pro["id"]}, headers=consumer.headers)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]

    # The period (moved into the past) and its usage as metering's flush job leaves it: hourly rollups.
    async with sessionmaker.begin() as session:
        await session.execute(update(Subscription).where(Subscription.id == sub_id).values(
            current_period_start=utc(2026, 10, 1), current_period_end=utc(2026, 11, 1)))
        await session.execute(insert(UsageRollup), [
            {"subscription_id": sub_id, "endpoint_id": endpoint["id"], "hour": utc(2026, 10, day, 12),
             "consumer_id": consumer.id, "partner_id": d.partner_id, "api_id": d.id, "method": "GET",
             "path": endpoint["path"], "calls": 1500, "units": 1500} for day in (3, 4)])
        await session.execute(insert(UsageRollup).values(  # next period's: not on this invoice
            subscription_id=sub_id, endpoint_id=endpoint["id"], hour=utc(2026, 11, 2), consumer_id=consumer.id,
            partner_id=d.partner_id, api_id=d.id, method="GET", path=endpoint["path"], calls=7, units=7))
    await close(api, operator)
    await run_jobs()
    [invoice] = (await api.client.get(f"/v1/invoices?subscription_id={sub_id}", headers=consumer.headers)).json()["data"]
    body = (await api.client.get(f"/v1/invoices/{invoice['id']}", headers=consumer.headers)).json()
    # 3,000 units - 1,000 included = 2,000 x 0.1 = 200
    assert body["status"] == "paid" and body["total"] == 4900 + 200
    assert [(line["kind"], line["path"], line["calls"], line["amount"]) for line in body["lines"]] == [
        ("plan_fee", None, None, 4900), ("usage", endpoint["path"], 3000, 200)]
    assert (await ledger(api, operator))[("partner_payable", d.partner_id, "usd")] == -(3920 + 160)

    # Downgrade through the API; the change is recorded for billing, and (to keep the test on fixed
    # dates) moved with the period to Sep 11 of Sep 1 - Oct 1: 10 of 30 days of Pro, the rest free.
    changed = await api.client.post(f"/v1/subscriptions/{sub_id}/change-plan", json={"plan_id": free["id"]},
                                    headers=consumer.headers)
    assert changed.status_code == 200, changed.text
    async with sessionmaker.begin() as session:
        moved = await session.execute(update(PlanChange).where(PlanChange.subscription_id == sub_id)
                                      .values(changed_at=utc(2026, 9, 11)))
        assert moved.rowcount == 1
        await session.execute(update(Subscription).where(Subscription.id == sub_id).values(
            current_period_start=utc(2026, 9, 1), current_period_end=utc(2026, 10, 1)))
    await close(api, operator, "2026-10-01T00:00:00Z")
    invoices = (await api.client.get(f"/v1/invoices?subscription_id={sub_id}", headers=consumer.headers)).json()["data"]
    second = next(i for i in invoices if i["period_start"].startswith("2026-09-01"))
    second = (await api.client.get(f"/v1/invoices/{second['id']}", headers=consumer.headers)).json()
    assert [(line["kind"], line["amount"]) for line in second["lines"]] == [("plan_fee", 1633)]  # 4900 x 10/30
    assert "10 of 30 days" in second["lines"][0]["description"] and second["total"] == 1633


async def test_the_gateway_refuses_an_unpaid_subscription_with_billings_detail_and_lets_it_back(
        app: Any, api: Api, sessionmaker: Any, redis: Any, upstream: Any) -> None:
    from marketplace.billing.payments import UNPAID_DETAIL, sync_block
    from tests.gateway.factories import consumer_with_key, make_api

    world = await make_api(app, api, upstream.url)
    _, sub, key = await consumer_with_key(app, api, world)
    path = f"/gateway/{world.slug}/forecast/paris"
    assert (await api.client.get(path, headers={"X-API-Key": key["key"]})).status_code == 200
    async with sessionmaker.begin() as session:
        await session.execute(update(Subscription).where(Subscription.id == sub["id"]).values(status="unpaid"))
        await sync_block(session, redis, sub["id"])
    refused = await api.client.get(path, headers={"X-API-Key": key["key"]})
    body = assert_problem(refused, 402, contains="POST /v1/billing/setup")
    assert body["detail"] == UNPAID_DETAIL
    async with sessionmaker.begin() as session:
        await session.execute(update(Subscription).where(Subscription.id == sub["id"]).values(status="active"))
        await sync_block(session, redis, sub["id"])
    assert (await api.client.get(path, headers={"X-API-Key": key["key"]})).status_code == 200


async def test_the_usage_estimate_is_the_rating_engines(app: Any, api: Api) -> None:
    from marketplace.billing.rating import Terms, quote
    from marketplace.metering.pricing import estimate_amount
    from partners.publishing.models import PlanVersion

    version = PlanVersion(currency="usd", monthly_fee=100, included_units=10, quota_limit=50, quota_hard=True,
                          unit_pricing={"model": "per_unit", "unit_amount": "1"}, name="x")
    # 80 units on a hard quota of 50: the engine bills 40 (units past a hard limit never are)
    assert estimate_amount(version, 80) == quote(Terms.from_plan_version(version), 80).total == 140
