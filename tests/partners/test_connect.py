from __future__ import annotations

import httpx
import respx

from marketplace.core.events import Event
from partners.connect.service import handle_account_updated
from partners.models import Partner
from tests.helpers import Api, assert_problem


def _mock_stripe(stripe_api: respx.Router, account_id: str = "acct_123") -> tuple[respx.Route, respx.Route]:
    accounts = stripe_api.post("/v1/accounts").mock(
        return_value=httpx.Response(200, json={"id": account_id, "object": "account", "type": "express"}))
    links = stripe_api.post("/v1/account_links").mock(side_effect=lambda request: httpx.Response(200, json={
        "object": "account_link", "url": f"https://connect.stripe.test/setup/{links.call_count}",
        "created": 1, "expires_at": 1_900_000_000}))
    return accounts, links


async def test_onboarding_creates_one_express_account_and_a_fresh_link_each_call(api: Api, stripe_api: respx.Router) -> None:
    accounts, links = _mock_stripe(stripe_api, "acct_onboard")
    owner = await api.signup()
    pid = (await api.partner(owner))["id"]
    first = await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=owner.headers)
    second = await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=owner.headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["url"] != second.json()["url"] and first.json()["account_id"] == "acct_onboard"
    assert accounts.call_count == 1 and links.call_count == 2
    created = accounts.calls[0].request
    assert created.headers["idempotency-key"] == f"connect-account-{pid}"
    assert b"type=express" in created.content and b"capabilities[transfers][requested]=true" in created.content
    keys = {call.request.headers["idempotency-key"] for call in links.calls}
    assert len(keys) == 2
    status = (await api.client.get(f"/v1/partners/{pid}/connect", headers=owner.headers)).json()
    assert status["connect_status"] == "pending" and status["account_id"] == "acct_onboard"


async def test_onboarding_is_for_managers_of_the_partner_only(api: Api, stripe_api: respx.Router) -> None:
    _mock_stripe(stripe_api, "acct_managers")
    owner, stranger, dev = await api.signup(), await api.signup(), await api.signup()
    pid = (await api.partner(owner))["id"]
    await api.client.post(f"/v1/partners/{pid}/members", json={"email": dev.email}, headers=owner.headers)
    assert_problem(await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=stranger.headers), 404)
    assert_problem(await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=dev.headers), 404)
    assert_problem(await api.client.get(f"/v1/partners/{pid}/connect", headers=stranger.headers), 404)


async def test_onboarding_without_stripe_configured_says_how_to_enable_payments(api: Api) -> None:
    owner = await api.signup()
    pid = (await api.partner(owner))["id"]
    body = assert_problem(await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=owner.headers), 503)
    assert "STRIPE_SECRET_KEY" in body["detail"]


async def test_account_updated_records_capabilities_and_requirements_once(api: Api, app, stripe_api: respx.Router) -> None:  # type: ignore[no-untyped-def]
    _mock_stripe(stripe_api, "acct_updated")
    owner = await api.signup()
    pid = (await api.partner(owner))["id"]
    await api.client.post(f"/v1/partners/{pid}/connect/onboarding", headers=owner.headers)

    def event(payouts: bool, due: list[str]) -> dict:  # type: ignore[type-arg]
        return {"type": "account.updated", "data": {"object": {
            "id": "acct_updated", "charges_enabled": payouts, "payouts_enabled": payouts,
            "requirements": {"currently_due": due}}}}

    async with app.state.sessionmaker.begin() as session:
        await handle_account_updated(session, event(False, ["external_account"]))
    async with app.state.sessionmaker.begin() as session:
        partner = await session.get(Partner, pid)
        assert partner.connect_status == "restricted" and partner.connect_requirements == ["external_account"]
    async with app.state.sessionmaker.begin() as session:
        await handle_account_updated(session, event(True, []))
        await handle_account_updated(session, event(True, []))  # the same state again: no new event
    status = (await api.client.get(f"/v1/partners/{pid}/connect", headers=owner.headers)).json()
    assert status["connect_status"] == "enabled" and status["payouts_enabled"] is True and status["requirements"] == []
    from sqlalchemy import func, select

    async with app.state.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Event).where(
            Event.partner_id == pid, Event.type == "partner.connect_updated"))
    assert count == 2
