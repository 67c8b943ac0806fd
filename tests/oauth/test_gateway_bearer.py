"""The gateway accepts our access tokens: verified locally, scope checked per endpoint, billed to
the consumer's subscription, and refused within a second of revocation."""

from __future__ import annotations

import time
from typing import Any

from marketplace.core.redis import key
from oauth import keys
from oauth.tokens import verify_access_token
from tests.gateway.factories import Upstream, flush, make_api, subscribe, usage
from tests.helpers import Api, User, assert_problem
from tests.oauth.conftest import REDIRECT_URI


def gw(world: Any, path: str) -> str:
    return f"/gateway/{world.slug}{path}"


async def _token(api: Api, user: User, scope: str = "weather:read") -> tuple[dict[str, Any], dict[str, Any]]:
    created = (await api.client.post("/v1/apps", headers=user.headers, json={
        "name": "Dashboard", "redirect_uris": [REDIRECT_URI]})).json()
    response = await api.client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope},
                                     auth=(created["client_id"], created["client_secret"]))
    assert response.status_code == 200, response.text
    return created, response.json()


async def test_a_bearer_call_is_proxied_and_billed_to_the_subscription(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    world = await make_api(app, api, upstream.url)
    user = await api.signup("Consumer")
    sub = await subscribe(api, user, world.plans["Free"])
    _, token = await _token(api, user)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    for _ in range(3):
        response = await api.client.get(gw(world, "/forecast/paris"), headers=bearer)
        assert response.status_code == 200, response.text
    received = {k.lower(): v for k, v in upstream.last()["headers"].items()}
    assert "authorization" not in received
    assert received["x-marketplace-consumer"] == user.id and received["x-marketplace-subscription"] == sub["id"]
    assert response.headers["x-ratelimit-limit"]
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 3


async def test_the_endpoint_scope_must_be_on_the_token(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    world = await make_api(app, api, upstream.url)  # the plan grants weather:read and weather:write
    user = await api.signup("Consumer")
    await subscribe(api, user, world.plans["Free"])
    _, token = await _token(api, user, scope="weather:read")
    response = await api.client.post(gw(world, "/forecast/paris"), headers={
        "Authorization": f"Bearer {token['access_token']}"}, content=b"{}")
    body = assert_problem(response, 403, contains="weather:write")
    assert body["scope"] == "weather:write" and "insufficient_scope" in response.headers["www-authenticate"]
    _, both = await _token(api, user, scope="weather:read weather:write")
    ok = await api.client.post(gw(world, "/forecast/paris"), headers={"Authorization": f"Bearer {both['access_token']}"},
                               content=b"{}")
    assert ok.status_code == 200


async def test_a_revoked_token_is_refused_at_once(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    world = await make_api(app, api, upstream.url)
    user = await api.signup("Consumer")
    await subscribe(api, user, world.plans["Free"])
    created, token = await _token(api, user)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await api.client.get(gw(world, "/forecast/paris"), headers=bearer)).status_code == 200
    started = time.monotonic()
    revoke = await api.client.post("/oauth/revoke", data={"token": token["access_token"]},
                                   auth=(created["client_id"], created["client_secret"]))
    assert revoke.status_code == 200
    refused = await api.client.get(gw(world, "/forecast/paris"), headers=bearer)
    assert time.monotonic() - started < 1.0
    assert_problem(refused, 401, contains="revoked")
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert await app.state.redis.exists(key("jti-deny", verify_access_token(token["access_token"]).jti))


async def test_bad_expired_and_foreign_tokens_are_refused(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    world = await make_api(app, api, upstream.url)
    user = await api.signup("Consumer")
    await subscribe(api, user, world.plans["Free"])
    _, token = await _token(api, user)
    header, claims, sig = token["access_token"].split(".")
    for bad in ["nope", f"{header}.{claims}.{sig[:-4]}AAAA", "eyJhbGciOiJub25lIn0.e30.", "x" * 5000]:
        response = await api.client.get(gw(world, "/forecast/paris"), headers={"Authorization": f"Bearer {bad}"})
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_only_works_on_apis_it_was_granted_for(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    weather = await make_api(app, api, upstream.url)
    other = await make_api(app, api, upstream.url, plans=[{"name": "Other", "scopes": ["maps:tiles"]}])
    user = await api.signup("Consumer")
    await subscribe(api, user, weather.plans["Free"])
    await subscribe(api, user, other.plans["Other"])
    _, token = await _token(api, user, scope="weather:read")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    # A scope-less endpoint of another API the user subscribes to: still refused for this token.
    assert_problem(await api.client.get(gw(other, "/fail"), headers=bearer), 403, contains="grants no scope")
    stranger = await api.signup("Stranger")
    await subscribe(api, stranger, other.plans["Other"])
    _, own = await _token(api, stranger, scope="maps:tiles")
    response = await api.client.get(gw(weather, "/forecast/x"), headers={"Authorization": f"Bearer {own['access_token']}"})
    assert_problem(response, 403, contains="no live subscription")


async def test_tokens_signed_after_a_key_rotation_are_accepted(app, api: Api, upstream: Upstream) -> None:  # type: ignore[no-untyped-def]
    world = await make_api(app, api, upstream.url)
    user = await api.signup("Consumer")
    await subscribe(api, user, world.plans["Free"])
    _, before = await _token(api, user)
    async with app.state.sessionmaker.begin() as session:
        await keys.rotate_signing_key(session)
    keys.KEY_RING.loaded_at -= 60  # as if this process loaded its key set a while ago
    _, after = await _token(api, user)
    for token in (before, after):
        response = await api.client.get(gw(world, "/forecast/x"), headers={"Authorization": f"Bearer {token['access_token']}"})
        assert response.status_code == 200, response.text
