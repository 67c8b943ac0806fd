"""Each attack on the authorization server fails, the way RFC 6749/7636/9700 say it should."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from marketplace.core.redis import key
from marketplace.settings import get_settings
from oauth.tokens import (
    KEY_RING,
    BadSignature,
    ExpiredToken,
    UnknownKey,
    UnsupportedAlgorithm,
    WrongClaims,
    WrongTokenType,
    sign_access_token,
    verify_access_token,
)
from tests.oauth.browser import parse_form
from tests.oauth.conftest import REDIRECT_URI, World
from tests.oauth.factories import cancel

CHALLENGE_OF_V50 = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 50).digest()).rstrip(b"=").decode()


def redirect_params(response: Any) -> dict[str, str]:
    assert response.status_code == 302, response.text
    assert response.headers["location"].startswith(REDIRECT_URI)
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def _tokens(world: World, created: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    created = created or await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    done, verifier = await world.authorize(client, browser)
    token = await client.fetch_token(world.meta["token_endpoint"], authorization_response=done.headers["location"],
                                     code_verifier=verifier)
    return created, token, done.headers["location"]


def _exchange(created: dict[str, Any], code: str, verifier: str | None) -> dict[str, str]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    if created.get("client_secret") is None:
        data["client_id"] = created["client_id"]
    return data


async def test_a_code_used_twice_is_refused_and_its_tokens_are_revoked(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    browser = await world.browser()
    done, verifier = await world.authorize(client, browser)
    code = redirect_params(done)["code"]
    auth = (created["client_id"], created["client_secret"])
    first = await world.api.client.post("/oauth/token", data=_exchange(created, code, verifier), auth=auth)
    assert first.status_code == 200, first.text
    replay = await world.api.client.post("/oauth/token", data=_exchange(created, code, verifier), auth=auth)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay.headers["content-type"].startswith("application/json") and replay.headers["cache-control"] == "no-store"
    issued = first.json()
    jti = verify_access_token(issued["access_token"]).jti
    assert await world.redis("exists", key("jti-deny", jti))
    refresh = await world.api.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                                "refresh_token": issued["refresh_token"]}, auth=auth)
    assert refresh.json()["error"] == "invalid_grant"


async def test_a_wrong_code_verifier_is_refused(world: World) -> None:
    created = await world.create_app()
    browser = await world.browser()
    done, _ = await world.authorize(world.oauth_client(created), browser)
    code = redirect_params(done)["code"]
    response = await world.api.client.post("/oauth/token", data=_exchange(created, code, "w" * 50),
                                           auth=(created["client_id"], created["client_secret"]))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    missing = await world.api.client.post("/oauth/token", data=_exchange(created, code, None),
                                          auth=(created["client_id"], created["client_secret"]))
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def _authorize_raw(world: World, created: dict[str, Any], **params: str) -> Any:
    browser = await world.browser()
    query = {"response_type": "code", "client_id": created["client_id"], "redirect_uri": REDIRECT_URI,
             "scope": "weather:read", "state": "s1", **params}
    return await browser.get("/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v is not None}))


async def test_a_public_client_without_pkce_is_refused(world: World) -> None:
    created = await world.create_app(public=True)
    params = redirect_params(await _authorize_raw(world, created))
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"] and params["state"] == "s1"


async def test_plain_pkce_is_refused(world: World) -> None:
    created = await world.create_app(public=True)
    plain = await _authorize_raw(world, created, code_challenge="v" * 50, code_challenge_method="plain")
    assert redirect_params(plain)["error"] == "invalid_request"
    # A challenge without a method would default to plain (RFC 7636 §4.3): refused as well.
    implicit_plain = await _authorize_raw(world, created, code_challenge="v" * 50)
    assert redirect_params(implicit_plain)["error"] == "invalid_request"
    s256 = await _authorize_raw(world, created, code_challenge=CHALLENGE_OF_V50, code_challenge_method="S256")
    assert s256.status_code == 200 and 'value="allow"' in s256.text


@pytest.mark.parametrize("redirect_uri", ["https://evil.example.com/callback", REDIRECT_URI + "/x",
                                          REDIRECT_URI + "?a=1", "http://app.example.com/callback"])
async def test_a_mismatched_redirect_uri_gets_an_error_page_never_a_redirect(world: World, redirect_uri: str) -> None:
    created = await world.create_app()
    response = await _authorize_raw(world, created, redirect_uri=redirect_uri)
    assert response.status_code == 400 and "location" not in response.headers
    assert "text/html" in response.headers["content-type"] and "invalid_request" in response.text


async def test_an_unknown_client_gets_an_error_page(world: World) -> None:
    response = await _authorize_raw(world, {"client_id": "app_01doesnotexist"})
    assert response.status_code == 400 and "location" not in response.headers and "invalid_client" in response.text
    logged_out = await world.api.client.get("/oauth/authorize?" + urlencode({
        "response_type": "code", "client_id": "nope", "redirect_uri": "https://evil.example.com/"}), follow_redirects=False)
    assert logged_out.status_code == 400 and "location" not in logged_out.headers


async def test_scopes_beyond_the_consumers_subscriptions_are_refused(world: World) -> None:
    created = await world.create_app()
    # weather:write exists on the API but the consumer's plan does not grant it.
    params = redirect_params(await _authorize_raw(world, created, scope="weather:read weather:write"))
    assert params["error"] == "invalid_scope" and params["state"] == "s1"
    cc = await world.api.client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                           "scope": "weather:read weather:write"},
                                     auth=(created["client_id"], created["client_secret"]))
    assert cc.status_code == 400 and cc.json()["error"] == "invalid_scope"
    # A refresh cannot widen the token either.
    _, token, _ = await _tokens(world, created)
    wider = await world.api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "scope": "weather:read weather:write"},
        auth=(created["client_id"], created["client_secret"]))
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


async def test_a_refresh_after_the_subscription_ends_is_refused(world: World) -> None:
    created, token, _ = await _tokens(world)
    await cancel(world.app, world.api, world.subscription_id)
    response = await world.api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(created["client_id"], created["client_secret"]))
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


async def test_a_revoked_access_token_is_inactive_and_on_the_deny_list(world: World) -> None:
    created, token, _ = await _tokens(world)
    auth = (created["client_id"], created["client_secret"])
    revoke = await world.api.client.post("/oauth/revoke", data={"token": token["access_token"]}, auth=auth)
    assert revoke.status_code == 200
    intro = await world.api.client.post("/oauth/introspect", data={"token": token["access_token"]}, auth=auth)
    assert intro.json() == {"active": False}
    claims = verify_access_token(token["access_token"])  # the signature is still fine: the deny-list decides
    assert await world.redis("exists", key("jti-deny", claims.jti))
    ttl = await world.redis("ttl", key("jti-deny", claims.jti))
    assert claims.exp - int(time.time()) <= ttl <= claims.exp - int(time.time()) + 8


async def test_a_reused_refresh_token_revokes_the_whole_family(world: World) -> None:
    created, token, _ = await _tokens(world)
    auth = (created["client_id"], created["client_secret"])
    rotated = await world.api.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                                "refresh_token": token["refresh_token"]}, auth=auth)
    assert rotated.status_code == 200
    newer = rotated.json()
    reuse = await world.api.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                              "refresh_token": token["refresh_token"]}, auth=auth)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The legitimate-looking newest refresh token is dead too, and so are the family's access tokens.
    latest = await world.api.client.post("/oauth/token", data={"grant_type": "refresh_token",
                                                               "refresh_token": newer["refresh_token"]}, auth=auth)
    assert latest.json()["error"] == "invalid_grant"
    for access in (token["access_token"], newer["access_token"]):
        assert (await world.api.client.post("/oauth/introspect", data={"token": access}, auth=auth)).json() == {"active": False}
        assert await world.redis("exists", key("jti-deny", verify_access_token(access).jti))


def _claims(**overrides: Any) -> dict[str, Any]:
    settings, now = get_settings(), int(time.time())
    claims = {"iss": settings.oauth_issuer, "sub": "usr_x", "aud": settings.oauth_token_audience, "client_id": "app_x",
              "scope": "weather:read", "jti": "at_x", "iat": now, "exp": now + 600}
    claims.update(overrides)
    return claims


def _our_key() -> tuple[str, rsa.RSAPrivateKey]:
    from oauth.keys import _private_cache

    kid = next(k for k in _private_cache if k in KEY_RING.keys)
    return kid, _private_cache[kid]


async def test_a_token_signed_by_an_unknown_key_is_refused(world: World) -> None:
    created, _token, _ = await _tokens(world)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = sign_access_token(_claims(), stranger, "not-our-kid")
    with pytest.raises(UnknownKey):
        verify_access_token(forged)
    kid, _ = _our_key()
    with pytest.raises(BadSignature):  # right kid, wrong key
        verify_access_token(sign_access_token(_claims(), stranger, kid))
    joserfc_forged = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": kid}, _claims(),
                                RSAKey.generate_key(2048))
    with pytest.raises(BadSignature):
        verify_access_token(joserfc_forged)
    intro = await world.api.client.post("/oauth/introspect", data={"token": forged},
                                        auth=(created["client_id"], created["client_secret"]))
    assert intro.json() == {"active": False}


async def test_an_expired_token_is_refused(world: World) -> None:
    kid, private = _our_key()
    now = int(time.time())
    expired = sign_access_token(_claims(iat=now - 1000, exp=now - 60), private, kid)
    with pytest.raises(ExpiredToken):
        verify_access_token(expired)
    _, token, _ = await _tokens(world)
    with pytest.raises(ExpiredToken):
        verify_access_token(token["access_token"], now=time.time() + 3600)


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(header)}.{enc(claims)}."


async def test_alg_none_and_other_algorithms_are_refused(world: World) -> None:  # world: the app (and its key ring) is up
    kid, private = _our_key()
    with pytest.raises(UnsupportedAlgorithm):
        verify_access_token(_unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, _claims()))
    with pytest.raises(UnsupportedAlgorithm):
        verify_access_token(_unsigned({"alg": "None", "typ": "at+jwt", "kid": kid}, _claims()))
    # HS256 keyed with our public key (the classic key-confusion attack).
    public_pem = RSAKey.import_key(private.public_key()).as_pem(private=False)
    signing_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": kid}, _claims())[:-1]
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    with pytest.raises(UnsupportedAlgorithm):
        verify_access_token(hs)


async def test_a_token_of_another_type_or_audience_is_refused(world: World) -> None:  # world: the app (and its key ring) is up
    kid, private = _our_key()
    good = sign_access_token(_claims(), private, kid)
    assert verify_access_token(good).sub == "usr_x"
    header, _claims_part, sig = good.split(".")
    id_token_like = jwt.encode({"alg": "RS256", "typ": "JWT", "kid": kid}, _claims(), RSAKey.import_key(private))
    with pytest.raises(WrongTokenType):
        verify_access_token(id_token_like)
    with pytest.raises(WrongClaims):
        verify_access_token(sign_access_token(_claims(aud="https://elsewhere.example.com"), private, kid))
    with pytest.raises(WrongClaims):
        verify_access_token(sign_access_token(_claims(iss="https://evil.example.com"), private, kid))
    tampered_claims = base64.urlsafe_b64encode(json.dumps(_claims(scope="weather:read weather:write")).encode()).rstrip(b"=").decode()
    with pytest.raises(BadSignature):
        verify_access_token(f"{header}.{tampered_claims}.{sig}")


async def test_consent_without_the_csrf_token_is_refused(world: World) -> None:
    created = await world.create_app()
    browser = await world.browser()
    client = world.oauth_client(created)
    url, _ = client.create_authorization_url(world.meta["authorization_endpoint"], code_verifier="v" * 50)
    page = await browser.get(url)
    assert 'name="csrf_token"' in page.text
    missing = await browser.submit(page, button=("decision", "allow"), drop=("csrf_token",))
    assert missing.status_code == 403 and "location" not in missing.headers
    wrong = await browser.submit(page, {"csrf_token": "0" * 64}, button=("decision", "allow"))
    assert wrong.status_code == 403 and "location" not in wrong.headers
    # Another user's valid page token does not work in this session either.
    assert parse_form(page.text).action == "/oauth/authorize"


async def test_token_endpoint_errors_use_rfc6749_names(world: World) -> None:
    created = await world.create_app()
    bad_secret = await world.api.client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                                   "scope": "weather:read"},
                                             auth=(created["client_id"], "mcs_wrong"))
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    assert bad_secret.headers["www-authenticate"].startswith("Basic")
    unknown = await world.api.client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                                "client_id": "app_nope", "client_secret": "x"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    password = await world.api.client.post("/oauth/token", data={"grant_type": "password", "username": "a",
                                                                 "password": "b"},
                                           auth=(created["client_id"], created["client_secret"]))
    assert password.status_code == 400 and password.json()["error"] == "unsupported_grant_type"
    bogus_code = await world.api.client.post("/oauth/token", data=_exchange(created, "nope", "v" * 50),
                                             auth=(created["client_id"], created["client_secret"]))
    assert bogus_code.status_code == 400 and bogus_code.json()["error"] == "invalid_grant"
    json_body = await world.api.client.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert json_body.status_code == 400 and "error" in json_body.json()
    public = await world.create_app(public=True)
    cc_public = await world.api.client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                                  "client_id": public["client_id"]})
    assert cc_public.status_code in (400, 401) and cc_public.json()["error"] in ("unauthorized_client", "invalid_client")


async def test_a_code_issued_to_one_app_cannot_be_redeemed_by_another(world: World) -> None:
    created = await world.create_app()
    other = await world.create_app()
    browser = await world.browser()
    done, verifier = await world.authorize(world.oauth_client(created), browser)
    code = redirect_params(done)["code"]
    stolen = await world.api.client.post("/oauth/token", data=_exchange(other, code, verifier),
                                         auth=(other["client_id"], other["client_secret"]))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"


async def test_the_verified_token_cache_honours_expiry_and_key_removal(world: World) -> None:  # world: the app (and its key ring) is up
    from oauth.tokens import KeyRing, VerifiedTokens

    kid, private = _our_key()
    verified = VerifiedTokens()
    ring = KeyRing(verified)
    ring.keys = dict(KEY_RING.keys)
    token = sign_access_token(_claims(), private, kid)
    claims = verify_access_token(token, ring=ring)
    verified.put(token, claims)
    assert verified.get(token, time.time()) == claims
    assert verified.get(token, claims.exp + 60) is None  # expired: verify again (and refuse)
    ring.load({"keys": []})  # the key left the key set
    assert verified.get(token, time.time()) is None


async def test_a_refresh_token_of_a_revoked_grant_is_refused_even_if_the_token_row_escaped_revocation(
        world: World) -> None:
    """DELETE /v1/oauth/grants/{id} revokes the grant's refresh tokens with one UPDATE; a refresh that
    commits a rotated token concurrently can leave a live token behind (READ COMMITTED does not show it
    to that UPDATE). The grant's own state must decide."""
    from sqlalchemy import update

    from marketplace.core.db import utcnow
    from oauth.models import OAuthGrant, OAuthRefreshToken

    created, token, _ = await _tokens(world)
    auth = (created["client_id"], created["client_secret"])
    async with world.app.state.sessionmaker.begin() as session:
        grant_id = await session.scalar(
            update(OAuthRefreshToken).where(OAuthRefreshToken.app_id == created["client_id"])
            .values(revoked_at=None).returning(OAuthRefreshToken.grant_id))
        assert grant_id
        await session.execute(update(OAuthGrant).where(OAuthGrant.id == grant_id).values(revoked_at=utcnow()))
    response = await world.api.client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=auth)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text
