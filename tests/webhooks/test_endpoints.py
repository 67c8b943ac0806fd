"""Webhook endpoints over HTTP: creation, secrets, tenancy, SSRF, validation, the event catalog."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from marketplace.settings import get_settings
from tests.helpers import Api, User, assert_problem
from tests.webhooks.conftest import Receiver
from webhooks.catalog import EVENT_TYPES
from webhooks.models import WebhookEndpoint

REQUIRED_TYPES = {
    "api.published", "subscription.created", "subscription.updated", "subscription.canceled",
    "usage.threshold_reached", "quota.exceeded", "invoice.finalized", "invoice.paid", "invoice.payment_failed",
    "payout.batch_created", "payout.paid", "payout.failed", "partner.connect_updated", "endpoint.disabled",
    "webhook.test",
}


async def create(api: Api, user: User, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    response = await api.client.post("/v1/webhook-endpoints", json={"url": url, "events": events or ["*"], **extra},
                                     headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_event_catalog_lists_every_event_type_with_an_example_without_auth(api: Api) -> None:
    response = await api.client.get("/v1/webhook-event-types")
    assert response.status_code == 200
    types = {item["type"]: item for item in response.json()}
    assert REQUIRED_TYPES <= set(types) == set(EVENT_TYPES)
    assert all(item["description"] and isinstance(item["example"], dict) for item in types.values())


async def test_creating_an_endpoint_shows_a_whsec_secret_that_is_stored_encrypted(api: Api, db: Any,
                                                                                  receiver: Receiver) -> None:
    user = await api.signup()
    created = await create(api, user, receiver.url()[1], ["invoice.paid", "invoice.paid", "subscription.created"],
                           description="prod")
    assert created["id"].startswith("we_") and created["secret"].startswith("whsec_")
    assert len(__import__("base64").b64decode(created["secret"].removeprefix("whsec_"))) >= 24
    assert created["events"] == ["invoice.paid", "subscription.created"]
    assert created["owner"] == {"partner_id": None, "consumer_id": user.id}
    shown = await api.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=user.headers)
    assert shown.status_code == 200 and "secret" not in shown.json() and shown.json()["enabled"] is True
    again = await api.client.get(f"/v1/webhook-endpoints/{created['id']}/secret", headers=user.headers)
    assert again.json()["secret"] == created["secret"] and again.json()["previous_secret"] is None
    async with db() as session:
        stored = await session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == created["id"]))
    assert stored is not None and created["secret"] not in stored.secret_encrypted
    assert created["secret"].removeprefix("whsec_") not in stored.secret_encrypted


async def test_endpoints_are_listed_newest_first_updated_and_deleted(api: Api, receiver: Receiver) -> None:
    user = await api.signup()
    first = await create(api, user, receiver.url()[1])
    second = await create(api, user, receiver.url()[1], ["invoice.paid"])
    page = (await api.client.get("/v1/webhook-endpoints?limit=1", headers=user.headers)).json()
    assert [e["id"] for e in page["data"]] == [second["id"]] and page["has_more"]
    rest = (await api.client.get(f"/v1/webhook-endpoints?limit=1&starting_after={page['next_cursor']}",
                                 headers=user.headers)).json()
    assert [e["id"] for e in rest["data"]] == [first["id"]] and not rest["has_more"]
    patched = await api.client.patch(f"/v1/webhook-endpoints/{first['id']}",
                                     json={"events": ["payout.paid"], "enabled": False, "description": "x"},
                                     headers=user.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["payout.paid"] and patched.json()["enabled"] is False
    assert (await api.client.delete(f"/v1/webhook-endpoints/{first['id']}", headers=user.headers)).status_code == 204
    assert_problem(await api.client.get(f"/v1/webhook-endpoints/{first['id']}", headers=user.headers), 404)


async def test_partner_endpoints_need_membership_and_any_member_sees_them(api: Api, receiver: Receiver) -> None:
    owner, developer, stranger = await api.signup(), await api.signup(), await api.signup()
    partner = await api.partner(owner)
    await api.client.post(f"/v1/partners/{partner['id']}/members", json={"email": developer.email,
                                                                         "role": "developer"}, headers=owner.headers)
    endpoint = await create(api, owner, receiver.url()[1], owner={"partner_id": partner["id"]})
    assert endpoint["owner"] == {"partner_id": partner["id"], "consumer_id": None}
    listed = (await api.client.get(f"/v1/webhook-endpoints?partner_id={partner['id']}",
                                   headers=developer.headers)).json()
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
    refused = await api.client.post("/v1/webhook-endpoints", json={"url": receiver.url()[1], "events": ["*"],
                                                                   "owner": {"partner_id": partner["id"]}},
                                    headers=stranger.headers)
    assert_problem(refused, 404)
    assert_problem(await api.client.get(f"/v1/webhook-endpoints?partner_id={partner['id']}",
                                        headers=stranger.headers), 404)


async def test_another_tenant_gets_404_on_every_endpoint_route(api: Api, receiver: Receiver, emit: Any) -> None:
    owner, stranger = await api.signup(), await api.signup()
    endpoint = await create(api, owner, receiver.url()[1])
    event_id = await emit("invoice.paid", consumer_id=owner.id)
    eid = endpoint["id"]
    for method, path, body in [
        ("GET", f"/v1/webhook-endpoints/{eid}", None),
        ("PATCH", f"/v1/webhook-endpoints/{eid}", {"enabled": False}),
        ("DELETE", f"/v1/webhook-endpoints/{eid}", None),
        ("GET", f"/v1/webhook-endpoints/{eid}/secret", None),
        ("POST", f"/v1/webhook-endpoints/{eid}/rotate-secret", None),
        ("POST", f"/v1/webhook-endpoints/{eid}/test", None),
        ("GET", f"/v1/webhook-endpoints/{eid}/deliveries", None),
        ("POST", f"/v1/webhook-endpoints/{eid}/deliveries/{event_id}/resend", None),
        ("POST", f"/v1/webhook-endpoints/{eid}/replay", {"since": "2020-01-01T00:00:00Z"}),
    ]:
        response = await api.client.request(method, path, json=body, headers=stranger.headers)
        body_ = assert_problem(response, 404)
        assert owner.id not in body_["detail"]
    assert (await api.client.get("/v1/webhook-endpoints", headers=stranger.headers)).json()["data"] == []
    # The owner cannot resend someone else's event through their own endpoint either.
    own = await create(api, stranger, receiver.url()[1])
    assert_problem(await api.client.post(f"/v1/webhook-endpoints/{own['id']}/deliveries/{event_id}/resend",
                                         headers=stranger.headers), 404)
    still = await api.client.get(f"/v1/webhook-endpoints/{eid}", headers=owner.headers)
    assert still.status_code == 200 and still.json()["enabled"] is True


async def test_private_loopback_and_link_local_urls_are_refused(api: Api, monkeypatch: Any) -> None:
    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    user = await api.signup()
    for url in ["https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest",
                "https://[::1]/hook", "https://192.168.0.10/hook", "https://localhost/hook",
                "http://93.184.215.14/hook", "ftp://example.com/hook", "https://user:pw@example.com/hook"]:
        response = await api.client.post("/v1/webhook-endpoints", json={"url": url, "events": ["*"]},
                                         headers=user.headers)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["field"] == "url"


async def test_bad_inputs_are_problems_never_500(api: Api, receiver: Receiver) -> None:
    user = await api.signup()
    url = receiver.url()[1]
    for body, status in [
        ({"url": url, "events": ["invoice.paid", "no.such.event"]}, 422),
        ({"url": url, "events": ["*", "invoice.paid"]}, 422),
        ({"url": url, "events": []}, 400),
        ({"url": url}, 400),
        ({"url": "not a url", "events": ["*"]}, 422),
        ({"url": url, "events": ["*"], "owner": {"partner_id": "prt_nope"}}, 404),
        ({"url": url, "events": ["*"], "owner": {"user": 1}}, 400),
        ({"url": url, "events": ["*"], "secret": "whsec_mine"}, 400),
        ({"url": 5, "events": ["*"]}, 400),
    ]:
        response = await api.client.post("/v1/webhook-endpoints", json=body, headers=user.headers)
        assert response.status_code in (status, 422 if status == 400 else status), (body, response.text)
        assert_problem(response, response.status_code)
    raw = await api.client.post("/v1/webhook-endpoints", content=b"{nope", headers={**user.headers,
                                                                                   "content-type": "application/json"})
    assert_problem(raw, raw.status_code)
    assert raw.status_code in (400, 422)
    endpoint = await create(api, user, url)
    eid = endpoint["id"]
    for method, path, body in [
        ("GET", f"/v1/webhook-endpoints/{eid}/deliveries?status=maybe", None),
        ("GET", f"/v1/webhook-endpoints/{eid}/deliveries?limit=0", None),
        ("GET", "/v1/webhook-endpoints?limit=1000", None),
        ("PATCH", f"/v1/webhook-endpoints/{eid}", {"events": ["bogus"]}),
        ("PATCH", f"/v1/webhook-endpoints/{eid}", {"url": "gopher://x"}),
        ("POST", f"/v1/webhook-endpoints/{eid}/replay", {}),
        ("POST", f"/v1/webhook-endpoints/{eid}/replay", {"since": "yesterday"}),
        ("POST", f"/v1/webhook-endpoints/{eid}/replay", {"since": "2999-01-01T00:00:00Z"}),
        ("POST", f"/v1/webhook-endpoints/{eid}/replay", {"since": "2026-01-01T00:00:00"}),
        ("POST", f"/v1/webhook-endpoints/{eid}/deliveries/evt_nope/resend", None),
    ]:
        response = await api.client.request(method, path, json=body, headers=user.headers)
        assert response.status_code in (400, 404, 422), (path, body, response.text)
        assert_problem(response, response.status_code)
    future = await api.client.post(f"/v1/webhook-endpoints/{eid}/replay", json={"since": "2999-01-01T00:00:00Z"},
                                   headers=user.headers)
    assert_problem(future, 422, contains="future")
    assert_problem(await api.client.get("/v1/webhook-endpoints"), 401)


async def test_a_disabled_endpoint_refuses_test_resend_and_replay_until_enabled(api: Api, receiver: Receiver) -> None:
    user = await api.signup()
    endpoint = await create(api, user, receiver.url()[1], enabled=False)
    response = await api.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=user.headers)
    assert_problem(response, 409, contains="enable it")


async def test_webhook_routes_are_in_the_openapi_document(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    for path in ["/v1/webhook-endpoints", "/v1/webhook-endpoints/{endpoint_id}",
                 "/v1/webhook-endpoints/{endpoint_id}/deliveries", "/v1/webhook-endpoints/{endpoint_id}/replay",
                 "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", "/v1/webhook-endpoints/{endpoint_id}/test",
                 "/v1/webhook-endpoints/{endpoint_id}/deliveries/{event_id}/resend", "/v1/webhook-event-types"]:
        assert path in doc["paths"], path


async def test_webhook_urls_whose_host_is_not_a_valid_dns_name_are_a_422_not_a_500(api: Api, monkeypatch: Any) -> None:
    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    user = await api.signup()
    for url in ["https://a..b/hook", "https://" + "x" * 70 + ".com/hook"]:
        response = await api.client.post("/v1/webhook-endpoints", json={"url": url, "events": ["*"]},
                                         headers=user.headers)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["field"] == "url"
