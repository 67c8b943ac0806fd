"""Apps (OAuth clients): created by a consumer, secrets shown once, tenant-scoped."""

from __future__ import annotations

import pytest

from marketplace.core.redis import key
from oauth.tokens import verify_access_token
from tests.helpers import assert_problem
from tests.oauth.conftest import REDIRECT_URI, World


async def test_a_confidential_app_shows_its_secret_once(world: World) -> None:
    created = await world.create_app()
    assert created["client_id"].startswith("app_") and created["client_secret"].startswith("mcs_")
    assert created["grant_types"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    listed = (await world.api.client.get("/v1/apps", headers=world.consumer.headers)).json()
    assert [a["client_id"] for a in listed["data"]] == [created["client_id"]] and listed["has_more"] is False
    assert "client_secret" not in listed["data"][0]
    one = (await world.api.client.get(f"/v1/apps/{created['client_id']}", headers=world.consumer.headers)).json()
    assert one["redirect_uris"] == [REDIRECT_URI] and one["secret_prefix"] == created["client_secret"][:12]
    assert "client_secret" not in one


async def test_rotating_the_secret_retires_the_old_one(world: World) -> None:
    created = await world.create_app()
    rotated = await world.api.client.post(f"/v1/apps/{created['client_id']}/rotate-secret", headers=world.consumer.headers)
    assert rotated.status_code == 200
    new_secret = rotated.json()["client_secret"]
    assert new_secret != created["client_secret"]
    data = {"grant_type": "client_credentials", "scope": "weather:read"}
    old = await world.api.client.post("/oauth/token", data=data, auth=(created["client_id"], created["client_secret"]))
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    new = await world.api.client.post("/oauth/token", data=data, auth=(created["client_id"], new_secret))
    assert new.status_code == 200


async def test_a_public_app_has_no_secret_and_no_client_credentials(world: World) -> None:
    created = await world.create_app(public=True)
    assert created.get("client_secret") is None and created["token_endpoint_auth_method"] == "none"
    assert "client_credentials" not in created["grant_types"]
    rotate = await world.api.client.post(f"/v1/apps/{created['client_id']}/rotate-secret", headers=world.consumer.headers)
    assert_problem(rotate, 409, contains="PKCE")
    refused = await world.api.client.post("/v1/apps", headers=world.consumer.headers, json={
        "name": "x", "redirect_uris": [REDIRECT_URI], "public": True, "grant_types": ["client_credentials"]})
    assert_problem(refused, 422, contains="client_credentials")


@pytest.mark.parametrize("uri", ["http://app.example.com/cb", "ftp://app.example.com/cb", "https://app.example.com/cb#x",
                                 "/relative/cb", "javascript:alert(1)"])
async def test_redirect_uris_must_be_https_or_loopback(world: World, uri: str) -> None:
    response = await world.api.client.post("/v1/apps", headers=world.consumer.headers,
                                           json={"name": "x", "redirect_uris": [uri]})
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "redirect_uris[0]"


async def test_loopback_http_redirect_uris_are_allowed(world: World) -> None:
    for uri in ("http://localhost:8080/cb", "http://127.0.0.1:9000/callback"):
        response = await world.api.client.post("/v1/apps", headers=world.consumer.headers,
                                               json={"name": "cli", "redirect_uris": [uri], "public": True})
        assert response.status_code == 201, response.text


async def test_bad_input_is_a_problem_not_a_crash(world: World) -> None:
    for body in [{"name": ""}, {"name": "x", "redirect_uris": "https://a.example"}, {"name": "x", "evil": 1},
                 {"name": "x", "grant_types": ["password"]}, {"name": "x", "redirect_uris": [REDIRECT_URI] * 11}]:
        response = await world.api.client.post("/v1/apps", headers=world.consumer.headers, json=body)
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    no_uri = await world.api.client.post("/v1/apps", headers=world.consumer.headers, json={"name": "x"})
    assert_problem(no_uri, 422, contains="redirect")
    only_cc = await world.api.client.post("/v1/apps", headers=world.consumer.headers,
                                          json={"name": "svc", "grant_types": ["client_credentials"]})
    assert only_cc.status_code == 201


async def test_another_users_app_answers_404(world: World) -> None:
    created = await world.create_app()
    stranger = await world.api.signup()
    cid = created["client_id"]
    for method, path in [("GET", f"/v1/apps/{cid}"), ("DELETE", f"/v1/apps/{cid}"),
                         ("POST", f"/v1/apps/{cid}/rotate-secret")]:
        assert_problem(await world.api.client.request(method, path, headers=stranger.headers), 404)
    assert (await world.api.client.get("/v1/apps", headers=stranger.headers)).json()["data"] == []
    assert_problem(await world.api.client.get("/v1/apps"), 401)


async def test_deleting_an_app_stops_its_tokens_at_once(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    token = await client.fetch_token(world.meta["token_endpoint"], grant_type="client_credentials", scope="weather:read")
    deleted = await world.api.client.delete(f"/v1/apps/{created['client_id']}", headers=world.consumer.headers)
    assert deleted.status_code == 204
    assert await world.redis("exists", key("jti-deny", verify_access_token(token["access_token"]).jti))
    again = await world.api.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "weather:read"},
                                        auth=(created["client_id"], created["client_secret"]))
    assert again.status_code == 401
    assert_problem(await world.api.client.get(f"/v1/apps/{created['client_id']}", headers=world.consumer.headers), 404)
