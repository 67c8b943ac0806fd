"""The happy paths, driven by authlib's OAuth client and a cookie-keeping browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from marketplace.core.redis import key
from oauth.tokens import verify_access_token
from tests.oauth.browser import Browser, parse_form
from tests.oauth.conftest import REDIRECT_URI, World


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def test_discovery_names_every_endpoint(world: World) -> None:
    meta = world.meta
    assert meta["issuer"] == "http://testserver.local"
    for name, path in [("authorization_endpoint", "/oauth/authorize"), ("token_endpoint", "/oauth/token"),
                       ("jwks_uri", "/oauth/jwks"), ("revocation_endpoint", "/oauth/revoke"),
                       ("introspection_endpoint", "/oauth/introspect")]:
        assert meta[name] == "http://testserver.local" + path
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert "weather:read" in meta["scopes_supported"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]


async def test_code_with_pkce_through_login_and_consent_gives_a_verifiable_jwt(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = Browser(world.api.client)
    verifier = "v" * 50
    url, state = client.create_authorization_url(world.meta["authorization_endpoint"], code_verifier=verifier)

    # No session: the authorization endpoint sends the browser to the login page, which returns to it.
    first = await browser.get(url)
    assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
    login_page = await browser.get(first.headers["location"])
    assert parse_form(login_page.text).action == "/login"
    back = await browser.submit(login_page, {"email": world.consumer.email, "password": "correct horse battery"})
    assert back.status_code == 303 and back.headers["location"].startswith("/oauth/authorize?")

    consent = await browser.get(back.headers["location"])
    assert consent.status_code == 200
    assert consent.headers["x-frame-options"] == "DENY"
    assert "Weather dashboard" in consent.text and "weather:read" in consent.text
    assert "Read forecasts for any city" in consent.text and "Weather" in consent.text
    assert 'name="decision" value="allow"' in consent.text and 'name="decision" value="deny"' in consent.text
    assert "weather:write" not in consent.text

    done = await browser.submit(consent, button=("decision", "allow"))
    params = query(done)
    assert params["state"] == state and params["code"]

    token = await client.fetch_token(world.meta["token_endpoint"], authorization_response=done.headers["location"],
                                     code_verifier=verifier)
    assert token["token_type"].lower() == "bearer" and token["scope"] == "weather:read"
    assert token["refresh_token"].startswith("mrt_") and token["expires_in"] == 600

    # RFC 9068, checked by an independent JOSE library against the published key set.
    jwks = (await world.api.client.get(world.meta["jwks_uri"])).json()
    decoded = jwt.decode(token["access_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = decoded.claims
    assert claims["iss"] == "http://testserver.local" and claims["aud"] == "http://testserver.local/gateway"
    assert claims["sub"] == world.consumer.id and claims["client_id"] == created["client_id"]
    assert claims["scope"] == "weather:read" and claims["jti"] and claims["exp"] - claims["iat"] == 600
    # …and by the gateway's DB-free verifier.
    verified = verify_access_token(token["access_token"])
    assert verified.sub == world.consumer.id and verified.scopes == {"weather:read"}
    await browser.aclose()


async def test_refresh_rotates_and_introspection_and_revocation_work_for_both_kinds(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    done, verifier = await world.authorize(client, browser)
    token = await client.fetch_token(world.meta["token_endpoint"], authorization_response=done.headers["location"],
                                     code_verifier=verifier)

    refreshed = await client.refresh_token(world.meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert refreshed["access_token"] != token["access_token"] and refreshed["scope"] == "weather:read"

    intro = await client.introspect_token(world.meta["introspection_endpoint"], token=refreshed["access_token"])
    body = intro.json()
    assert body["active"] is True and body["client_id"] == created["client_id"]
    assert body["sub"] == world.consumer.id and body["scope"] == "weather:read"
    intro_rt = (await client.introspect_token(world.meta["introspection_endpoint"], token=refreshed["refresh_token"],
                                              token_type_hint="refresh_token")).json()
    assert intro_rt["active"] is True and intro_rt["token_type"] == "refresh_token"
    # The rotated-away refresh token is no longer active.
    assert (await client.introspect_token(world.meta["introspection_endpoint"],
                                          token=token["refresh_token"])).json() == {"active": False}

    revoked = await client.revoke_token(world.meta["revocation_endpoint"], token=refreshed["access_token"],
                                        token_type_hint="access_token")
    assert revoked.status_code == 200
    assert (await client.introspect_token(world.meta["introspection_endpoint"],
                                          token=refreshed["access_token"])).json() == {"active": False}
    jti = verify_access_token(refreshed["access_token"]).jti
    ttl = await world.redis("ttl", key("jti-deny", jti))
    assert 0 < ttl <= 607

    assert (await client.revoke_token(world.meta["revocation_endpoint"], token=refreshed["refresh_token"])).status_code == 200
    again = await world.api.client.post(world.meta["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]},
        auth=(created["client_id"], created["client_secret"]))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    await browser.aclose()


async def test_public_client_uses_pkce_without_a_secret(world: World) -> None:
    created = await world.create_app(public=True)
    assert "client_secret" not in created or created["client_secret"] is None
    client = world.oauth_client(created)
    browser = await world.browser()
    done, verifier = await world.authorize(client, browser)
    token = await client.fetch_token(world.meta["token_endpoint"], authorization_response=done.headers["location"],
                                     code_verifier=verifier)
    refreshed = await client.refresh_token(world.meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert verify_access_token(refreshed["access_token"]).client_id == created["client_id"]
    # Public clients may revoke their own tokens (RFC 7009), but cannot introspect (no credentials).
    revoke = await world.api.client.post(world.meta["revocation_endpoint"], data={
        "token": refreshed["refresh_token"], "client_id": created["client_id"]})
    assert revoke.status_code == 200
    intro = await world.api.client.post(world.meta["introspection_endpoint"], data={
        "token": refreshed["access_token"], "client_id": created["client_id"]})
    assert intro.status_code == 401 and intro.json()["error"] == "invalid_client"
    await browser.aclose()


async def test_remembered_consent_skips_the_page_for_the_same_or_fewer_scopes(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    first, _ = await world.authorize(client, browser)
    assert query(first)["code"]
    # Same scopes again: straight back to the app with a code, no page.
    verifier = "w" * 50
    url, _ = client.create_authorization_url(world.meta["authorization_endpoint"], code_verifier=verifier)
    second = await browser.get(url)
    assert query(second)["code"]

    grants = (await world.api.client.get("/v1/oauth/grants", headers=world.consumer.headers)).json()["data"]
    assert [(g["app_id"], g["scopes"]) for g in grants] == [(created["client_id"], ["weather:read"])]
    await browser.aclose()


async def test_more_scopes_than_remembered_show_the_consent_page_again(world: World, app, api) -> None:  # type: ignore[no-untyped-def]
    from tests.oauth.factories import published_api, subscribe

    maps = await published_api(app, api, name="Maps", scopes={"maps:tiles": "Fetch map tiles"})
    await subscribe(app, api, world.consumer, maps)
    created = await world.create_app()
    browser = await world.browser()
    first, _ = await world.authorize(world.oauth_client(created), browser)
    assert query(first)["code"]
    client = world.oauth_client(created, scope="weather:read maps:tiles")
    url, _ = client.create_authorization_url(world.meta["authorization_endpoint"], code_verifier="x" * 50)
    page = await browser.get(url)
    assert page.status_code == 200 and "Fetch map tiles" in page.text and "Maps" in page.text
    await browser.aclose()


async def test_deny_redirects_with_access_denied(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    response, _ = await world.authorize(client, browser, decision="deny", state="st-123")
    params = query(response)
    assert params["error"] == "access_denied" and params["state"] == "st-123" and "code" not in params
    assert (await world.api.client.get("/v1/oauth/grants", headers=world.consumer.headers)).json()["data"] == []
    await browser.aclose()


async def test_revoking_a_grant_revokes_its_tokens(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    done, verifier = await world.authorize(client, browser)
    token = await client.fetch_token(world.meta["token_endpoint"], authorization_response=done.headers["location"],
                                     code_verifier=verifier)
    grants = (await world.api.client.get("/v1/oauth/grants", headers=world.consumer.headers)).json()["data"]
    stranger = await world.api.signup()
    other = await world.api.client.delete(f"/v1/oauth/grants/{grants[0]['id']}", headers=stranger.headers)
    assert other.status_code == 404
    gone = await world.api.client.delete(f"/v1/oauth/grants/{grants[0]['id']}", headers=world.consumer.headers)
    assert gone.status_code == 204
    jti = verify_access_token(token["access_token"]).jti
    assert await world.redis("exists", key("jti-deny", jti))
    refresh = await world.api.client.post(world.meta["token_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(created["client_id"], created["client_secret"]))
    assert refresh.json()["error"] == "invalid_grant"
    # Consent is asked again next time.
    page = await browser.get(client.create_authorization_url(world.meta["authorization_endpoint"],
                                                             code_verifier="y" * 50)[0])
    assert page.status_code == 200 and 'value="allow"' in page.text
    await browser.aclose()


async def test_client_credentials_act_for_the_apps_owner_within_their_subscriptions(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    token = await client.fetch_token(world.meta["token_endpoint"], grant_type="client_credentials",
                                     scope="weather:read")
    claims = verify_access_token(token["access_token"])
    assert claims.sub == world.consumer.id and claims.client_id == created["client_id"]
    assert "refresh_token" not in token
    refused = await world.api.client.post(world.meta["token_endpoint"], data={
        "grant_type": "client_credentials", "scope": "weather:write"}, auth=(created["client_id"], created["client_secret"]))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


async def test_an_app_with_one_redirect_uri_may_omit_it_in_both_steps(world: World) -> None:
    created = await world.create_app()
    browser = await world.browser()
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
    page = await browser.get(f"/oauth/authorize?response_type=code&client_id={created['client_id']}"
                             f"&scope=weather:read&code_challenge={challenge}&code_challenge_method=S256")
    done = await browser.submit(page, button=("decision", "allow"))
    code = query(done)["code"]
    auth = (created["client_id"], created["client_secret"])
    token = await world.api.client.post("/oauth/token", auth=auth, data={
        "grant_type": "authorization_code", "code": code,
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"})
    assert token.status_code == 200, token.text
