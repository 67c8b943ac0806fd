from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from marketplace.core.events import Event
from marketplace.subscriptions.periods import add_months, period_containing
from tests.gateway.factories import Upstream, db, make_api, new_key, subscribe
from tests.helpers import Api, assert_problem

PLANS = [
    {"name": "Free", "rate_per_minute": 60, "quota_limit": 1000, "quota_hard": True},
    {"name": "Pro", "monthly_fee": 4900, "included_units": 50000, "quota_limit": 200000,
     "unit_pricing": {"model": "per_unit", "unit_amount": "0.1"}},
    {"name": "Also free", "rate_per_minute": 600},
    {"name": "Old", "status": "archived"},
]


async def test_subscribing_to_a_free_plan_starts_a_monthly_period_at_once(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    user = await api.signup()
    sub = await subscribe(api, user, world.plans["Free"])
    assert sub["id"].startswith("sub_") and sub["status"] == "active" and sub["plan_id"] == world.plans["Free"]
    assert sub["api_id"] == world.api_id and sub["plan_version_id"]
    start = datetime.fromisoformat(sub["current_period_start"])
    assert datetime.fromisoformat(sub["current_period_end"]) == add_months(start, 1)
    async with db()() as session:
        types = (await session.scalars(select(Event.type).where(Event.consumer_id == user.id))).all()
    assert "subscription.created" in types


async def test_a_paid_plan_asks_for_a_payment_method(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    user = await api.signup()
    response = await api.client.post("/v1/subscriptions", json={"plan_id": world.plans["Pro"]}, headers=user.headers)
    assert_problem(response, 402, contains="POST /v1/billing/setup")


async def test_only_active_plans_of_published_apis_can_be_subscribed(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    draft = await make_api(app, api, upstream.url, status="draft")
    user = await api.signup()
    assert_problem(await api.client.post("/v1/subscriptions", json={"plan_id": world.plans["Old"]},
                                         headers=user.headers), 422)
    assert_problem(await api.client.post("/v1/subscriptions", json={"plan_id": next(iter(draft.plans.values()))},
                                         headers=user.headers), 404)
    assert_problem(await api.client.post("/v1/subscriptions", json={"plan_id": "pln_nope"}, headers=user.headers), 404)
    bad = await api.client.post("/v1/subscriptions", json={"plan": "x"}, headers=user.headers)
    assert bad.status_code in (400, 422) and bad.headers["content-type"].startswith("application/problem+json")


async def test_one_live_subscription_per_api_and_changing_plan_updates_it(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    user = await api.signup()
    sub = await subscribe(api, user, world.plans["Free"])
    again = await api.client.post("/v1/subscriptions", json={"plan_id": world.plans["Also free"]}, headers=user.headers)
    assert_problem(again, 409, contains="change-plan")
    changed = await api.client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                    json={"plan_id": world.plans["Also free"]}, headers=user.headers)
    assert changed.status_code == 200 and changed.json()["plan_id"] == world.plans["Also free"]
    assert changed.json()["id"] == sub["id"]
    paid = await api.client.patch(f"/v1/subscriptions/{sub['id']}", json={"plan_id": world.plans["Pro"]},
                                  headers=user.headers)
    assert_problem(paid, 402)


async def test_cancel_at_period_end_then_now(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    user = await api.signup()
    sub = await subscribe(api, user, world.plans["Free"])
    later = await api.client.delete(f"/v1/subscriptions/{sub['id']}", headers=user.headers)
    assert later.status_code == 200 and later.json()["status"] == "active" and later.json()["cancel_at_period_end"]
    now = await api.client.delete(f"/v1/subscriptions/{sub['id']}?now=true", headers=user.headers)
    assert now.json()["status"] == "canceled" and now.json()["canceled_at"]
    # a new subscription to the same API is allowed once the old one is canceled
    await subscribe(api, user, world.plans["Free"])
    listed = (await api.client.get("/v1/subscriptions", headers=user.headers)).json()
    assert [s["status"] for s in listed["data"]] == ["active", "canceled"]
    async with db()() as session:
        types = set((await session.scalars(select(Event.type).where(Event.consumer_id == user.id))).all())
    assert {"subscription.created", "subscription.updated", "subscription.canceled"} <= types


async def test_another_consumers_subscription_and_keys_answer_404(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    owner, stranger = await api.signup(), await api.signup()
    sub = await subscribe(api, owner, world.plans["Free"])
    key = await new_key(api, owner, sub["id"])
    for method, path, body in [
        ("GET", f"/v1/subscriptions/{sub['id']}", None),
        ("DELETE", f"/v1/subscriptions/{sub['id']}", None),
        ("POST", f"/v1/subscriptions/{sub['id']}/change-plan", {"plan_id": world.plans["Also free"]}),
        ("GET", f"/v1/subscriptions/{sub['id']}/usage", None),
        ("POST", "/v1/api-keys", {"subscription_id": sub["id"], "name": "mine now"}),
        ("DELETE", f"/v1/api-keys/{key['id']}", None),
        ("POST", f"/v1/api-keys/{key['id']}/rotate", None),
    ]:
        assert_problem(await api.client.request(method, path, json=body, headers=stranger.headers), 404)
    assert (await api.client.get("/v1/api-keys", headers=stranger.headers)).json() == []
    assert (await api.client.get("/v1/subscriptions", headers=stranger.headers)).json()["data"] == []


async def test_api_keys_are_shown_once_and_listed_without_secrets(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=PLANS)
    user = await api.signup()
    sub = await subscribe(api, user, world.plans["Free"])
    key = await new_key(api, user, sub["id"], "prod")
    assert key["id"].startswith("key_") and key["key"].startswith(key["prefix"]) and len(key["key"]) > 40
    listed = (await api.client.get("/v1/api-keys", headers=user.headers)).json()
    assert listed[0]["id"] == key["id"] and "key" not in listed[0] and listed[0]["last_used_at"] is None
    assert set(listed[0]) >= {"id", "prefix", "name", "subscription_id", "created_at", "last_used_at"}


def test_periods_are_anchored_on_the_subscription_day_and_clamped_to_month_end() -> None:
    anchor = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert add_months(anchor, 1) == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert add_months(anchor, 2) == datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert add_months(anchor, 13) == datetime(2027, 2, 28, 10, 0, tzinfo=UTC)
    start, end = period_containing(anchor, datetime(2026, 3, 15, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 2, 28, 10, tzinfo=UTC), datetime(2026, 3, 31, 10, tzinfo=UTC))


async def test_changing_to_a_plan_in_another_currency_is_refused(app, api: Api, upstream: Upstream) -> None:
    # The period's fee is prorated across the plans: one invoice cannot add dollars to euros.
    world = await make_api(app, api, upstream.url, plans=[{"name": "Dollars"}, {"name": "Euros", "currency": "eur"}])
    user = await api.signup()
    sub = await subscribe(api, user, world.plans["Dollars"])
    response = await api.client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                     json={"plan_id": world.plans["Euros"]}, headers=user.headers)
    assert_problem(response, 422, contains="currency")
    same = (await api.client.get(f"/v1/subscriptions/{sub['id']}", headers=user.headers)).json()
    assert same["plan_id"] == world.plans["Dollars"]
