"""Bad input on the protocol endpoints answers an RFC 6749 error (or an error page), never a 500."""

from __future__ import annotations

import pytest

from tests.oauth.conftest import World

JUNK_POSTS = [
    ("/oauth/token", {}, None),
    ("/oauth/token", {"grant_type": "authorization_code"}, None),
    ("/oauth/token", {"grant_type": "refresh_token", "refresh_token": "x" * 5000}, None),
    ("/oauth/token", {"grant_type": "client_credentials", "scope": "a\"b"}, None),
    ("/oauth/token", {"grant_type": "client_credentials"}, {"Authorization": "Basic !!!notbase64"}),
    ("/oauth/token", {"grant_type": "client_credentials"}, {"Authorization": "Basic Og=="}),
    ("/oauth/token", {"grant_type": "client_credentials", "client_id": "x" * 300, "client_secret": "y"}, None),
    ("/oauth/revoke", {}, None),
    ("/oauth/revoke", {"token": "abc", "token_type_hint": "bogus", "client_id": "app_x"}, None),
    ("/oauth/introspect", {"token": "a.b.c"}, None),
    ("/oauth/authorize", {"decision": "allow"}, None),
    ("/oauth/authorize", {"decision": "maybe"}, None),
]


@pytest.mark.parametrize(("path", "data", "headers"), JUNK_POSTS)
async def test_junk_posts_never_crash(world: World, path: str, data: dict[str, str], headers: dict[str, str] | None) -> None:
    response = await world.api.client.post(path, data=data, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    if path != "/oauth/authorize":
        assert response.json()["error"]


@pytest.mark.parametrize("query", ["", "response_type=code", "client_id=app_x&response_type=code",
                                   "response_type=token&client_id=app_x", "client_id=%00&redirect_uri=%ff"])
async def test_junk_authorization_requests_get_an_error_page(world: World, query: str) -> None:
    browser = await world.browser()
    response = await browser.get("/oauth/authorize?" + query)
    assert response.status_code == 400 and "location" not in response.headers, response.text


async def test_a_valid_client_with_junk_parameters_is_told_through_its_redirect(world: World) -> None:
    created = await world.create_app()
    browser = await world.browser()
    base = f"/oauth/authorize?client_id={created['client_id']}&redirect_uri=https://app.example.com/callback&state=z"
    for extra, error in [("&response_type=token", "unsupported_response_type"),
                         ("&response_type=code", "invalid_scope"),
                         ("&response_type=code&scope=%22bad%22", "invalid_scope"),
                         ("&response_type=code&scope=weather:read&code_challenge=short&code_challenge_method=S256",
                          "invalid_request")]:
        response = await browser.get(base + extra)
        assert response.status_code == 302, (extra, response.text)
        assert f"error={error}" in response.headers["location"] and "state=z" in response.headers["location"]


async def test_control_characters_and_odd_ids_are_refused_cleanly(world: World) -> None:
    headers = world.consumer.headers
    for body in [{"name": "a\u0000b", "redirect_uris": ["https://a.example/cb"]},
                 {"name": "ok", "redirect_uris": ["https://a.example/c\u0000b"]},
                 {"name": "ok", "redirect_uris": ["https://a.example/c b"]}]:
        response = await world.api.client.post("/v1/apps", json=body, headers=headers)
        assert response.status_code in (400, 422), response.text
    for path in ["/v1/apps/%00", "/v1/apps/app_%00", "/v1/oauth/grants/%00", "/v1/oauth/grants/grt_x"]:
        method = "DELETE" if "grants" in path else "GET"
        response = await world.api.client.request(method, path, headers=headers)
        assert response.status_code == 404, (path, response.text)


async def test_the_consent_page_escapes_what_the_client_sent(world: World) -> None:
    created = await world.create_app()
    browser = await world.browser()
    client = world.oauth_client(created)
    url, _ = client.create_authorization_url(world.meta["authorization_endpoint"], code_verifier="v" * 50,
                                             state='"><script>alert(1)</script>')
    page = await browser.get(url)
    assert page.status_code == 200 and "<script>alert(1)</script>" not in page.text
    done = await browser.submit(page, button=("decision", "allow"))
    assert done.status_code == 302 and "state=%22%3E%3Cscript%3E" in done.headers["location"]


async def test_list_cursors_with_junk_do_not_crash(world: World) -> None:
    for path in ["/v1/apps?starting_after=%00", "/v1/oauth/grants?starting_after=%00", "/v1/apps?limit=abc"]:
        response = await world.api.client.get(path, headers=world.consumer.headers)
        assert response.status_code in (200, 400, 422), (path, response.text)
