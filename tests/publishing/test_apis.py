"""Creating and managing APIs: drafts, validation, the SSRF rule, proxy secrets, tenancy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Api, User, assert_problem, unique
from tests.publishing.helpers import complete, create_api, db, draft, plan_body


async def test_creating_an_api_makes_a_draft_with_a_prefixed_id(api: Api) -> None:
    user = await api.signup()
    partner = await api.partner(user)
    slug = unique("acme-weather")
    created = await create_api(api, user, partner["id"], slug=slug, upstream_url="https://upstream.example.com/v1/",
                               tags=["Forecast", "forecast", "climate"])
    assert created["id"].startswith("api_") and created["status"] == "draft" and created["slug"] == slug
    assert created["partner_id"] == partner["id"] and created["published_at"] is None
    assert created["upstream_url"] == "https://upstream.example.com/v1"  # paths are appended to it
    assert created["tags"] == ["forecast", "climate"] and created["gateway_path"] == f"/gateway/{slug}"
    fetched = await api.client.get(f"/v1/apis/{created['id']}", headers=user.headers)
    assert fetched.status_code == 200 and fetched.json() == created


async def test_listing_apis_is_paginated_newest_first_and_scoped_to_the_callers_partners(api: Api) -> None:
    user, other = await api.signup(), await api.signup()
    partner = await api.partner(user)
    ids = [(await create_api(api, user, partner["id"]))["id"] for _ in range(3)]
    await draft(api)  # someone else's
    first = (await api.client.get("/v1/apis", params={"partner_id": partner["id"], "limit": 2},
                                  headers=user.headers)).json()
    assert [a["id"] for a in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
    second = (await api.client.get("/v1/apis", params={"partner_id": partner["id"], "limit": 2,
                                                       "starting_after": first["next_cursor"]},
                                   headers=user.headers)).json()
    assert [a["id"] for a in second["data"]] == [ids[0]] and second["has_more"] is False
    everything = (await api.client.get("/v1/apis", headers=user.headers)).json()
    assert {a["id"] for a in everything["data"]} == set(ids)
    assert (await api.client.get("/v1/apis", headers=other.headers)).json()["data"] == []
    assert_problem(await api.client.get("/v1/apis", params={"partner_id": partner["id"]}, headers=other.headers), 404)


async def test_duplicate_slug_is_a_conflict(api: Api) -> None:
    d = await draft(api)
    response = await api.client.post("/v1/apis", headers=d.user.headers, json={
        "partner_id": d.partner_id, "slug": d.slug, "name": "Again", "description": "x",
        "upstream_url": "https://upstream.example.com"})
    body = assert_problem(response, 409, contains="slug")
    assert body["errors"][0]["field"] == "slug"


@pytest.fixture(scope="module")
async def partner_user(api: Api) -> tuple[User, str]:
    """A partner's user for the tests that only send invalid APIs (nothing is created)."""
    user = await api.signup()
    return user, (await api.partner(user))["id"]


@pytest.mark.parametrize("slug", ["ab", "Upper-Case", "under_score", "sp ace", "x" * 65, "émoji"])
async def test_bad_slugs_are_refused_with_a_field_error(api: Api, partner_user: tuple[User, str], slug: str) -> None:
    user, partner_id = partner_user
    response = await api.client.post("/v1/apis", headers=user.headers, json={
        "partner_id": partner_id, "slug": slug, "name": "X", "description": "x",
        "upstream_url": "https://upstream.example.com"})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "slug"


@pytest.mark.parametrize("url", ["not a url", "ftp://files.example.com", "https://user:pw@example.com",
                                 "https://example.com/?key=1", "https://example.com:99999", "/relative/path"])
async def test_bad_upstream_urls_are_refused_with_a_field_error(api: Api, partner_user: tuple[User, str], url: str) -> None:
    user, partner_id = partner_user
    response = await api.client.post("/v1/apis", headers=user.headers, json={
        "partner_id": partner_id, "slug": unique("bad-url"), "name": "X", "description": "x", "upstream_url": url})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "upstream_url"


@pytest.fixture
def private_networks_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """MARKETPLACE_ALLOW_PRIVATE_NETWORKS=0 for one test (the suite runs with 1)."""
    from marketplace.settings import get_settings

    monkeypatch.setattr(get_settings(), "allow_private_networks", False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://10.1.2.3/api", "http://169.254.169.254/latest",
                                 "http://[::1]/", "http://192.168.0.10"])
async def test_private_network_upstreams_are_refused(api: Api, url: str, partner_user: tuple[User, str],
                                                                    private_networks_refused: None) -> None:
    user, partner_id = partner_user
    response = await api.client.post("/v1/apis", headers=user.headers, json={
        "partner_id": partner_id, "slug": unique("ssrf"), "name": "X", "description": "x", "upstream_url": url})
    body = assert_problem(response, 422, contains="private")
    assert body["errors"] == [{"field": "upstream_url", "message": body["errors"][0]["message"]}]
    assert "MARKETPLACE_ALLOW_PRIVATE_NETWORKS" in body["errors"][0]["message"]


async def test_private_network_upstreams_are_accepted_when_the_setting_allows_them(api: Api) -> None:
    d = await draft(api, upstream_url="http://127.0.0.1:9000")
    assert d.api["upstream_url"] == "http://127.0.0.1:9000"


async def test_changing_the_upstream_to_a_private_address_is_refused(api: Api, private_networks_refused: None) -> None:
    d = await draft(api, upstream_url="https://93.184.215.14")
    response = await api.client.patch(f"/v1/apis/{d.id}", json={"upstream_url": "http://10.0.0.5"},
                                      headers=d.user.headers)
    assert_problem(response, 422, contains="private")
    assert (await api.client.get(f"/v1/apis/{d.id}", headers=d.user.headers)).json()["upstream_url"] == \
        "https://93.184.215.14"


async def test_patching_an_api_changes_only_the_fields_sent(api: Api) -> None:
    d = await draft(api)
    response = await api.client.patch(f"/v1/apis/{d.id}", headers=d.user.headers, json={
        "name": "Acme Weather 2", "category": None, "tags": ["radar"], "upstream_url": "https://other.example.com"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Acme Weather 2" and body["category"] is None and body["tags"] == ["radar"]
    assert body["description"] == d.api["description"] and body["upstream_url"] == "https://other.example.com"
    assert body["revision"] > d.api["revision"] and body["slug"] == d.slug
    refused = await api.client.patch(f"/v1/apis/{d.id}", headers=d.user.headers, json={"slug": "new-slug"})
    assert_problem(refused, 422)
    blank = await api.client.patch(f"/v1/apis/{d.id}", headers=d.user.headers, json={"name": ""})
    assert assert_problem(blank, 422)["errors"][0]["field"] == "name"


async def test_proxy_secret_is_readable_by_members_rotatable_and_encrypted_at_rest(api: Api) -> None:
    from sqlalchemy import select

    from partners.publishing.models import Api as ApiRow

    d = await draft(api)
    first = (await api.client.get(f"/v1/apis/{d.id}/proxy-secret", headers=d.user.headers)).json()
    assert first["api_id"] == d.id and len(first["secret"]) >= 40
    assert first["header"] == "X-Marketplace-Proxy-Secret"
    async with db() as session:
        stored = await session.scalar(select(ApiRow.proxy_secret_encrypted).where(ApiRow.id == d.id))
    assert stored and first["secret"] not in stored
    rotated = await api.client.post(f"/v1/apis/{d.id}/proxy-secret/rotate", headers=d.user.headers)
    assert rotated.status_code == 200 and rotated.json()["secret"] != first["secret"]
    again = (await api.client.get(f"/v1/apis/{d.id}/proxy-secret", headers=d.user.headers)).json()
    assert again["secret"] == rotated.json()["secret"]


async def test_every_change_the_gateway_caches_bumps_the_revision_and_invalidates_after_commit(api: Api) -> None:
    from marketplace.core.cache import channel
    from marketplace.core.redis import make_redis

    d = await draft(api)
    redis = make_redis()
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel())
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await complete(api, d)
        await api.client.post(f"/v1/apis/{d.id}/proxy-secret/rotate", headers=d.user.headers)
        messages = []
        for _ in range(20):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message:
                messages.append(message["data"].decode())
            elif len(messages) >= 4:
                break
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
        await redis.aclose()
    assert messages.count(f"api:{d.slug}") >= 4  # scope, endpoint, plan, rotation
    after = (await api.client.get(f"/v1/apis/{d.id}", headers=d.user.headers)).json()
    assert after["revision"] == d.api["revision"] + 4


async def test_any_member_of_the_partner_may_manage_its_apis(api: Api) -> None:
    d = await draft(api)
    developer = await api.signup()
    added = await api.client.post(f"/v1/partners/{d.partner_id}/members", headers=d.user.headers,
                                  json={"email": developer.email, "role": "developer"})
    assert added.status_code == 201
    response = await api.client.post(f"/v1/apis/{d.id}/scopes", headers=developer.headers,
                                     json={"name": "weather:read", "description": "Read"})
    assert response.status_code == 201, response.text


async def test_missing_or_bad_token_is_refused(api: Api) -> None:
    d = await draft(api)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        assert_problem(await api.client.get(f"/v1/apis/{d.id}", headers=headers), 401)
        assert_problem(await api.client.post("/v1/apis", json={}, headers=headers), 401)
        assert_problem(await api.client.post(f"/v1/apis/{d.id}/plans", json=plan_body(), headers=headers), 401)


async def test_malformed_json_and_unknown_fields_are_problems(api: Api) -> None:
    d = await draft(api)
    headers = {**d.user.headers, "Content-Type": "application/json"}
    for path in ("/v1/apis", f"/v1/apis/{d.id}/scopes", f"/v1/apis/{d.id}/endpoints", f"/v1/apis/{d.id}/plans"):
        bad = await api.client.post(path, content=b"{not json", headers=headers)
        assert bad.status_code in (400, 422) and bad.headers["content-type"].startswith("application/problem+json")
        array = await api.client.post(path, content=b"[]", headers=headers)
        assert_problem(array, 422)
    unknown = await api.client.patch(f"/v1/apis/{d.id}", json={"name": "x", "evil": True}, headers=d.user.headers)
    assert_problem(unknown, 422)


async def test_another_tenant_gets_404_on_every_publishing_route(api: Api) -> None:
    d = await draft(api)
    plan = await complete(api, d)
    endpoint_id = (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"][0]["id"]
    scope_id = (await api.client.get(f"/v1/apis/{d.id}/scopes", headers=d.user.headers)).json()["data"][0]["id"]
    stranger = await api.signup()
    own_partner = await api.partner(stranger)
    a, p = d.id, plan["id"]
    routes: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/apis/{a}", None),
        ("PATCH", f"/v1/apis/{a}", {"name": "Mine now"}),
        ("GET", f"/v1/apis/{a}/proxy-secret", None),
        ("POST", f"/v1/apis/{a}/proxy-secret/rotate", None),
        ("POST", f"/v1/apis/{a}/publish", None),
        ("POST", f"/v1/apis/{a}/unpublish", None),
        ("POST", f"/v1/apis/{a}/import-openapi", {"openapi": "3.1.0", "paths": {"/x": {"get": {}}}}),
        ("GET", f"/v1/apis/{a}/scopes", None),
        ("POST", f"/v1/apis/{a}/scopes", {"name": "weather:write"}),
        ("DELETE", f"/v1/apis/{a}/scopes/{scope_id}", None),
        ("GET", f"/v1/apis/{a}/endpoints", None),
        ("POST", f"/v1/apis/{a}/endpoints", {"method": "GET", "path": "/mine"}),
        ("GET", f"/v1/apis/{a}/endpoints/{endpoint_id}", None),
        ("PATCH", f"/v1/apis/{a}/endpoints/{endpoint_id}", {"weight": 5}),
        ("DELETE", f"/v1/apis/{a}/endpoints/{endpoint_id}", None),
        ("GET", f"/v1/apis/{a}/plans", None),
        ("POST", f"/v1/apis/{a}/plans", plan_body(scopes=[])),
        ("GET", f"/v1/plans/{p}", None),
        ("PATCH", f"/v1/plans/{p}", {"monthly_fee": 0}),
        ("DELETE", f"/v1/plans/{p}", None),
        ("POST", f"/v1/admin/apis/{a}/suspend", None),
        ("POST", "/v1/apis", {"partner_id": d.partner_id, "slug": unique("steal"), "name": "x",
                              "description": "x", "upstream_url": "https://upstream.example.com"}),
    ]
    for method, path, body in routes:
        response = await api.client.request(method, path, json=body, headers=stranger.headers)
        assert_problem(response, 404)
    # Nothing changed for the owner, and a made-up id answers exactly like someone else's.
    owner_view = (await api.client.get(f"/v1/apis/{a}", headers=d.user.headers)).json()
    assert owner_view["name"] == d.api["name"] and owner_view["status"] == "draft"
    ghost = await api.client.get("/v1/apis/api_00000000000000000000000000", headers=stranger.headers)
    theirs = await api.client.get(f"/v1/apis/{a}", headers=stranger.headers)
    assert ghost.json()["detail"].replace("api_00000000000000000000000000", a) == theirs.json()["detail"]
    # Being a partner elsewhere does not help.
    assert own_partner["role"] == "owner"
    listed = (await api.client.get("/v1/apis", params={"partner_id": own_partner["id"]}, headers=stranger.headers))
    assert listed.json()["data"] == []


async def test_creating_an_api_with_an_idempotency_key_twice_creates_it_once(api: Api) -> None:
    user = await api.signup()
    partner = await api.partner(user)
    body = {"partner_id": partner["id"], "slug": unique("idem"), "name": "Once", "description": "x",
            "upstream_url": "https://upstream.example.com"}
    headers = {**user.headers, "Idempotency-Key": unique("create-api")}
    first = await api.client.post("/v1/apis", json=body, headers=headers)
    second = await api.client.post("/v1/apis", json=body, headers=headers)
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    listed = (await api.client.get("/v1/apis", params={"partner_id": partner["id"]}, headers=user.headers)).json()
    assert len(listed["data"]) == 1


@pytest.mark.parametrize("url", ["http://a..b/", "http://" + "x" * 70 + ".com/"])
async def test_upstream_hosts_that_are_not_valid_dns_names_are_a_422_not_a_500(
        api: Api, url: str, partner_user: tuple[User, str], private_networks_refused: None) -> None:
    user, partner_id = partner_user
    response = await api.client.post("/v1/apis", headers=user.headers, json={
        "partner_id": partner_id, "slug": unique("badhost"), "name": "X", "description": "x", "upstream_url": url})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "upstream_url"
