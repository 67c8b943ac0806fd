from __future__ import annotations

import asyncio

from tests.helpers import Api, assert_problem


async def test_creating_a_partner_makes_the_caller_its_owner(api: Api) -> None:
    user = await api.signup()
    partner = await api.partner(user, "Acme Weather")
    assert partner["id"].startswith("prt_") and partner["name"] == "Acme Weather"
    assert partner["connect_status"] == "not_started" and partner["role"] == "owner"
    me = (await api.client.get("/v1/me", headers=user.headers)).json()
    assert me["partners"] == [{"partner_id": partner["id"], "partner_name": "Acme Weather", "role": "owner"}]


async def test_another_tenant_gets_404_on_every_partner_route(api: Api) -> None:
    owner, stranger = await api.signup(), await api.signup()
    partner = await api.partner(owner)
    pid = partner["id"]
    for method, path, body in [
        ("GET", f"/v1/partners/{pid}", None),
        ("GET", f"/v1/partners/{pid}/members", None),
        ("POST", f"/v1/partners/{pid}/members", {"email": stranger.email, "role": "admin"}),
    ]:
        response = await api.client.request(method, path, json=body, headers=stranger.headers)
        assert_problem(response, 404)
    assert (await api.client.get("/v1/partners", headers=stranger.headers)).json() == []


async def test_members_by_role_developers_cannot_manage_members(api: Api) -> None:
    owner, dev, third = await api.signup(), await api.signup(), await api.signup()
    pid = (await api.partner(owner))["id"]
    added = await api.client.post(f"/v1/partners/{pid}/members", json={"email": dev.email, "role": "developer"},
                                  headers=owner.headers)
    assert added.status_code == 201 and added.json()["role"] == "developer"
    assert (await api.client.get(f"/v1/partners/{pid}", headers=dev.headers)).json()["role"] == "developer"
    refused = await api.client.post(f"/v1/partners/{pid}/members", json={"email": third.email}, headers=dev.headers)
    assert_problem(refused, 404)
    again = await api.client.post(f"/v1/partners/{pid}/members", json={"email": dev.email}, headers=owner.headers)
    assert_problem(again, 409)
    nobody = await api.client.post(f"/v1/partners/{pid}/members", json={"email": "ghost@example.com"},
                                   headers=owner.headers)
    assert_problem(nobody, 422, contains="sign up")


async def test_the_last_owner_cannot_be_removed(api: Api) -> None:
    owner = await api.signup()
    pid = (await api.partner(owner))["id"]
    members = (await api.client.get(f"/v1/partners/{pid}/members", headers=owner.headers)).json()
    response = await api.client.delete(f"/v1/partners/{pid}/members/{members[0]['id']}", headers=owner.headers)
    assert_problem(response, 409, contains="owner")


async def test_partner_name_is_validated(api: Api) -> None:
    user = await api.signup()
    response = await api.client.post("/v1/partners", json={"name": ""}, headers=user.headers)
    assert response.status_code in (400, 422)
    assert response.json()["errors"]
    extra = await api.client.post("/v1/partners", json={"name": "x", "evil": 1}, headers=user.headers)
    assert extra.status_code in (400, 422)


async def test_an_admin_cannot_make_owners_or_remove_them(api: Api) -> None:
    owner, admin, accomplice = await api.signup(), await api.signup(), await api.signup()
    pid = (await api.partner(owner))["id"]
    added = await api.client.post(f"/v1/partners/{pid}/members", json={"email": admin.email, "role": "admin"},
                                  headers=owner.headers)
    assert added.status_code == 201, added.text
    promoted = await api.client.post(f"/v1/partners/{pid}/members", json={"email": accomplice.email, "role": "owner"},
                                     headers=admin.headers)
    assert_problem(promoted, 403, contains="owner")
    members = (await api.client.get(f"/v1/partners/{pid}/members", headers=owner.headers)).json()
    owner_member = next(m for m in members if m["role"] == "owner")
    # even with a second owner around (so the last-owner rule does not apply), an admin cannot remove one
    second = await api.client.post(f"/v1/partners/{pid}/members", json={"email": accomplice.email, "role": "owner"},
                                   headers=owner.headers)
    assert second.status_code == 201, second.text
    removed = await api.client.delete(f"/v1/partners/{pid}/members/{owner_member['id']}", headers=admin.headers)
    assert_problem(removed, 403, contains="owner")
    still = (await api.client.get(f"/v1/partners/{pid}/members", headers=owner.headers)).json()
    assert owner_member["id"] in {m["id"] for m in still}


async def test_operators_suspend_a_partner_and_its_plans_cannot_be_subscribed(api: Api, app) -> None:  # type: ignore[no-untyped-def]
    from marketplace.accounts.service import create_operator
    from tests.helpers import unique

    op_email = f"{unique('op')}@example.com"
    async with app.state.sessionmaker.begin() as session:
        await create_operator(session, email=op_email, password="operator-pass")
    owner, consumer = await api.signup(), await api.signup()
    pid = (await api.partner(owner))["id"]
    assert_problem(await api.client.post(f"/v1/admin/partners/{pid}/suspend", headers=owner.headers), 404)

    # A published API with a free plan, through the publishing API.
    j = owner.headers
    slug = unique("susp")
    api_id = (await api.client.post("/v1/apis", headers=j, json={
        "partner_id": pid, "slug": slug, "name": "S", "description": "d", "upstream_url": "http://127.0.0.1:9"})).json()["id"]
    await api.client.post(f"/v1/apis/{api_id}/endpoints", headers=j, json={"method": "GET", "path": "/x"})
    plan = (await api.client.post(f"/v1/apis/{api_id}/plans", headers=j, json={
        "name": "Free", "currency": "usd", "monthly_fee": 0})).json()["id"]
    assert (await api.client.post(f"/v1/apis/{api_id}/publish", headers=j)).status_code == 200

    op_token = (await api.client.post("/v1/login", json={"email": op_email, "password": "operator-pass"})).json()["token"]
    op = {"Authorization": f"Bearer {op_token}"}
    # Warm the gateway's cache with the published API (a call with a bad key: 401).
    assert_problem(await api.client.get(f"/gateway/{slug}/x", headers={"X-API-Key": "mk_any"}), 401)
    suspended = await api.client.post(f"/v1/admin/partners/{pid}/suspend", headers=op, json={"reason": "review"})
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    assert_problem(await api.client.post("/v1/subscriptions", headers=consumer.headers, json={"plan_id": plan}), 404)
    assert (await api.client.get(f"/v1/catalog/apis/{slug}")).status_code == 404
    # The gateway refuses the suspended partner's APIs (the suspension reached its cache).
    await asyncio.sleep(0.2)
    assert_problem(await api.client.get(f"/gateway/{slug}/x", headers={"X-API-Key": "mk_any"}), 503)
    reinstated = await api.client.post(f"/v1/admin/partners/{pid}/unsuspend", headers=op)
    assert reinstated.json()["status"] == "active"
    assert (await api.client.post("/v1/subscriptions", headers=consumer.headers, json={"plan_id": plan})).status_code == 201
