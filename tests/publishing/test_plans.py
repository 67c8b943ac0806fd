"""Plans: every pricing model of API.md, money validation, scopes, versioning, archiving."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Api, assert_problem
from tests.publishing.helpers import PLAN, Draft, draft, plan_body, post_ok, subscribe_directly


async def _api_with_scope(api: Api) -> Draft:
    d = await draft(api)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read", "description": "Read"})
    return d


@pytest.fixture(scope="module")
async def shared(api: Api) -> Draft:
    """One API (with the scope weather:read) shared by tests that need no fresh one."""
    return await _api_with_scope(api)


async def _plan(api: Api, d: Draft, body: dict[str, Any]) -> Any:
    return await api.client.post(f"/v1/apis/{d.id}/plans", json=body, headers=d.user.headers)


async def test_the_plan_of_api_md_is_created_as_given(api: Api) -> None:
    d = await _api_with_scope(api)
    response = await _plan(api, d, PLAN)
    assert response.status_code == 201, response.text
    plan = response.json()
    assert plan["id"].startswith("pln_") and plan["version"] == 1 and plan["status"] == "active"
    for field in ("name", "currency", "monthly_fee", "included_units", "unit_pricing", "quota", "rate_limit", "scopes"):
        assert plan[field] == PLAN[field], field
    fetched = await api.client.get(f"/v1/plans/{plan['id']}", headers=d.user.headers)
    assert fetched.json() == plan
    listed = (await api.client.get(f"/v1/apis/{d.id}/plans", headers=d.user.headers)).json()
    assert [p["id"] for p in listed["data"]] == [plan["id"]]


@pytest.mark.parametrize("pricing", [
    None,
    {"model": "per_unit", "unit_amount": "0.2"},
    {"model": "volume", "tiers": [{"up_to": 10000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]},
    {"model": "graduated", "tiers": [{"up_to": None, "unit_amount": "0.000001"}]},
    {"model": "package", "package_size": 1000, "unit_amount": "50"},
])
async def test_every_pricing_model_is_accepted(api: Api, shared: Draft, pricing: Any) -> None:
    body = plan_body(unit_pricing=pricing, monthly_fee=0 if pricing is None else 1000, quota=None, rate_limit=None)
    response = await _plan(api, shared, body)
    assert response.status_code == 201, response.text
    assert response.json()["unit_pricing"] == pricing and response.json()["quota"] is None


async def test_a_free_plan_needs_only_a_name_and_currency(api: Api) -> None:
    d = await draft(api)
    plan = (await _plan(api, d, {"name": "Free", "currency": "EUR"})).json()
    assert plan["monthly_fee"] == 0 and plan["unit_pricing"] is None and plan["currency"] == "eur"
    assert plan["scopes"] == [] and plan["quota"] is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"monthly_fee": -1}, "monthly_fee"),
    ({"monthly_fee": 49.5}, "monthly_fee"),
    ({"monthly_fee": 49.0}, "monthly_fee"),
    ({"monthly_fee": "4900"}, "monthly_fee"),
    ({"monthly_fee": True}, "monthly_fee"),
    ({"included_units": -5}, "included_units"),
    ({"included_units": 0.5}, "included_units"),
    ({"quota": {"limit": 10.5, "hard": True}}, "quota.limit"),
    ({"quota": {"limit": 0}}, "quota.limit"),
    ({"rate_limit": {"per_second": -1}}, "rate_limit.per_second"),
    ({"rate_limit": {"per_minute": "300"}}, "rate_limit.per_minute"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": 0.1}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": "-0.1"}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": "abc"}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": "1e100"}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": "NaN"}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "per_unit", "unit_amount": "0.1", "tiers": []}}, "unit_pricing.tiers"),
    ({"unit_pricing": {"model": "per_unit"}}, "unit_pricing.unit_amount"),
    ({"unit_pricing": {"model": "package", "unit_amount": "5"}}, "unit_pricing.package_size"),
    ({"unit_pricing": {"model": "package", "package_size": 0, "unit_amount": "5"}}, "unit_pricing.package_size"),
    ({"unit_pricing": {"model": "flat"}}, "unit_pricing.model"),
    ({"unit_pricing": {"model": "graduated", "tiers": []}}, "unit_pricing.tiers"),
    ({"currency": "xyz"}, "currency"),
    ({"name": ""}, "name"),
    ({"scopes": ["weather:write"]}, "scopes[0]"),
    ({"scopes": ["Not A Scope"]}, "scopes[0]"),
])
async def test_bad_plan_terms_answer_422_naming_the_field(api: Api, shared: Draft, changes: dict[str, Any],
                                                         field: str) -> None:
    body = assert_problem(await _plan(api, shared, plan_body(**changes)), 422)
    assert field in [e["field"] for e in body["errors"]], body


@pytest.mark.parametrize(("tiers", "field"), [
    ([{"up_to": 1000, "unit_amount": "1"}, {"up_to": 500, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}],
     "unit_pricing.tiers[1].up_to"),
    ([{"up_to": 1000, "unit_amount": "1"}, {"up_to": 1000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}],
     "unit_pricing.tiers[1].up_to"),
    ([{"up_to": None, "unit_amount": "1"}, {"up_to": 1000, "unit_amount": "1"}], "unit_pricing.tiers[0].up_to"),
    ([{"up_to": 1000, "unit_amount": "1"}, {"up_to": 2000, "unit_amount": "1"}], "unit_pricing.tiers[1].up_to"),
    ([{"up_to": 0, "unit_amount": "1"}, {"up_to": None, "unit_amount": "1"}], "unit_pricing.tiers[0].up_to"),
    ([{"up_to": 10, "unit_amount": "1"}, {"up_to": None, "unit_amount": "x"}], "unit_pricing.tiers[1].unit_amount"),
])
async def test_tiers_must_ascend_and_end_unbounded(api: Api, shared: Draft, tiers: list[dict[str, Any]],
                                                   field: str) -> None:
    body = assert_problem(await _plan(api, shared, plan_body(unit_pricing={"model": "volume", "tiers": tiers})), 422)
    assert field in [e["field"] for e in body["errors"]], body


async def test_editing_a_plan_without_subscribers_changes_it_in_place(api: Api) -> None:
    d = await _api_with_scope(api)
    plan = (await _plan(api, d, PLAN)).json()
    response = await api.client.patch(f"/v1/plans/{plan['id']}", headers=d.user.headers,
                                      json={"monthly_fee": 5900, "quota": None})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["version"] == 1 and edited["version_id"] == plan["version_id"]
    assert edited["monthly_fee"] == 5900 and edited["quota"] is None
    assert edited["unit_pricing"] == PLAN["unit_pricing"] and edited["name"] == "Pro"


async def test_editing_a_plan_with_subscribers_creates_a_new_version(api: Api) -> None:
    from sqlalchemy import select

    from marketplace.subscriptions.models import Subscription
    from tests.publishing.helpers import db

    d = await _api_with_scope(api)
    plan = (await _plan(api, d, PLAN)).json()
    consumer = await api.signup()
    subscription_id = await subscribe_directly(consumer, d, plan["id"])
    response = await api.client.patch(f"/v1/plans/{plan['id']}", headers=d.user.headers,
                                      json={"monthly_fee": 5900, "rate_limit": {"per_second": 20}})
    assert response.status_code == 200, response.text
    edited = response.json()
    assert edited["version"] == 2 and edited["version_id"] != plan["version_id"] and edited["id"] == plan["id"]
    assert edited["monthly_fee"] == 5900 and edited["rate_limit"] == {"per_second": 20, "per_minute": None}
    async with db() as session:
        kept = await session.scalar(select(Subscription.plan_version_id).where(Subscription.id == subscription_id))
    assert kept == plan["version_id"]  # the subscriber keeps the terms they signed up for
    # Version 2 has no subscriber yet: editing it again changes it in place.
    again = (await api.client.patch(f"/v1/plans/{plan['id']}", headers=d.user.headers, json={"name": "Pro+"})).json()
    assert again["version"] == 2 and again["version_id"] == edited["version_id"] and again["name"] == "Pro+"


async def test_an_edit_that_changes_nothing_makes_no_new_version(api: Api) -> None:
    d = await _api_with_scope(api)
    plan = (await _plan(api, d, PLAN)).json()
    await subscribe_directly(await api.signup(), d, plan["id"])
    same = await api.client.patch(f"/v1/plans/{plan['id']}", headers=d.user.headers,
                                  json={"monthly_fee": PLAN["monthly_fee"], "currency": "USD"})
    assert same.status_code == 200 and same.json()["version"] == 1


async def test_plan_edits_are_validated_like_new_plans(api: Api) -> None:
    d = await _api_with_scope(api)
    plan = (await _plan(api, d, PLAN)).json()
    for patch_body, field in [({"monthly_fee": -100}, "monthly_fee"), ({"monthly_fee": 1.5}, "monthly_fee"),
                              ({"scopes": ["nope:x"]}, "scopes[0]"),
                              ({"unit_pricing": {"model": "graduated", "tiers": [{"up_to": 5, "unit_amount": "1"}]}},
                               "unit_pricing.tiers[0].up_to")]:
        body = assert_problem(await api.client.patch(f"/v1/plans/{plan['id']}", json=patch_body,
                                                     headers=d.user.headers), 422)
        assert field in [e["field"] for e in body["errors"]], body
    unchanged = (await api.client.get(f"/v1/plans/{plan['id']}", headers=d.user.headers)).json()
    assert unchanged["monthly_fee"] == PLAN["monthly_fee"]


async def test_archiving_a_plan_keeps_it_for_subscribers_but_freezes_it(api: Api) -> None:
    d = await _api_with_scope(api)
    plan = (await _plan(api, d, PLAN)).json()
    archived = await api.client.delete(f"/v1/plans/{plan['id']}", headers=d.user.headers)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert (await api.client.get(f"/v1/plans/{plan['id']}", headers=d.user.headers)).json()["status"] == "archived"
    active = (await api.client.get(f"/v1/apis/{d.id}/plans", params={"status": "active"}, headers=d.user.headers))
    assert active.json()["data"] == []
    assert_problem(await api.client.patch(f"/v1/plans/{plan['id']}", json={"monthly_fee": 1},
                                          headers=d.user.headers), 409, contains="archived")


async def test_only_active_plans_of_published_apis_take_new_subscribers(api: Api) -> None:
    from marketplace.core.errors import Conflict, NotFound
    from partners.publishing.plans import subscribable
    from tests.publishing.helpers import db, published

    d = await _api_with_scope(api)
    draft_plan = (await _plan(api, d, PLAN)).json()
    live, plan = await published(api)
    archived = await post_ok(api, live.user, f"/v1/apis/{live.id}/plans", plan_body(name="Old"))
    await api.client.delete(f"/v1/plans/{archived['id']}", headers=live.user.headers)
    async with db() as session:
        got_api, got_plan, version = await subscribable(session, plan["id"])
        assert (got_api.id, got_plan.id, version.id) == (live.id, plan["id"], plan["version_id"])
        with pytest.raises(NotFound):
            await subscribable(session, draft_plan["id"])
        with pytest.raises(Conflict):
            await subscribable(session, archived["id"])
        with pytest.raises(NotFound):
            await subscribable(session, "pln_nope")
