from __future__ import annotations

from tests.helpers import Api, assert_problem, unique


async def test_signup_returns_user_and_a_working_token(api: Api) -> None:
    email = f"{unique('ada')}@example.com"
    response = await api.client.post("/v1/signup", json={"email": email, "password": "correct horse battery",
                                                          "name": "Ada"})
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["id"].startswith("usr_") and body["user"]["email"] == email
    me = await api.client.get("/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == email and me.json()["is_operator"] is False and me.json()["partners"] == []


async def test_duplicate_email_is_a_conflict_whatever_its_case(api: Api) -> None:
    user = await api.signup()
    response = await api.client.post("/v1/signup", json={"email": user.email.upper(), "password": "another password",
                                                          "name": "Twin"})
    assert_problem(response, 409, contains="already exists")


async def test_signup_validation_lists_the_bad_fields(api: Api) -> None:
    response = await api.client.post("/v1/signup", json={"email": "not-an-email", "password": "short", "name": ""})
    body = assert_problem(response, 400 if False else response.status_code)
    assert response.status_code in (400, 422)
    assert body["errors"], body


async def test_malformed_json_is_a_problem_not_a_500(api: Api) -> None:
    response = await api.client.post("/v1/signup", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_login_gives_a_token_and_wrong_password_is_401(api: Api) -> None:
    user = await api.signup()
    ok = await api.client.post("/v1/login", json={"email": user.email, "password": "correct horse battery"})
    assert ok.status_code == 200 and ok.json()["token"].startswith("mkt_")
    bad = await api.client.post("/v1/login", json={"email": user.email, "password": "wrong password"})
    assert_problem(bad, 401, contains="wrong email or password")
    unknown = await api.client.post("/v1/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert_problem(unknown, 401)


async def test_missing_and_bad_tokens_are_refused_with_what_to_do(api: Api) -> None:
    assert_problem(await api.client.get("/v1/me"), 401, contains="POST /v1/login")
    assert_problem(await api.client.get("/v1/me", headers={"Authorization": "Bearer mkt_nope"}), 401)
    assert_problem(await api.client.get("/v1/me", headers={"Authorization": "Basic abc"}), 401)


async def test_revoked_token_stops_working_and_tokens_are_listed_without_secrets(api: Api) -> None:
    user = await api.signup()
    created = await api.client.post("/v1/tokens", json={"name": "ci"}, headers=user.headers)
    assert created.status_code == 201
    token = created.json()
    listed = await api.client.get("/v1/tokens", headers=user.headers)
    assert token["token"] not in listed.text and any(t["id"] == token["id"] for t in listed.json())
    other = {"Authorization": f"Bearer {token['token']}"}
    assert (await api.client.get("/v1/me", headers=other)).status_code == 200
    assert (await api.client.delete(f"/v1/tokens/{token['id']}", headers=user.headers)).status_code == 204
    assert_problem(await api.client.get("/v1/me", headers=other), 401)


async def test_another_users_token_cannot_be_revoked(api: Api) -> None:
    alice, bob = await api.signup(), await api.signup()
    created = (await api.client.post("/v1/tokens", json={"name": "x"}, headers=alice.headers)).json()
    assert_problem(await api.client.delete(f"/v1/tokens/{created['id']}", headers=bob.headers), 404)


async def test_login_page_sets_a_session_cookie_and_redirects_to_next(api: Api) -> None:
    user = await api.signup()
    page = await api.client.get("/login?next=/dashboard")
    assert page.status_code == 200 and 'name="email"' in page.text and 'name="password"' in page.text
    response = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery",
                                                      "next": "/catalog"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/catalog"
    assert "mkt_session" in response.headers["set-cookie"] and "HttpOnly" in response.headers["set-cookie"]
    api.client.cookies.clear()


async def test_login_page_refuses_open_redirects_and_wrong_passwords(api: Api) -> None:
    user = await api.signup()
    response = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery",
                                                      "next": "//evil.example.com/"}, follow_redirects=False)
    assert response.headers["location"] == "/dashboard"
    api.client.cookies.clear()
    wrong = await api.client.post("/login", data={"email": user.email, "password": "nope"})
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text


async def test_login_page_refuses_backslash_and_control_character_open_redirects(api: Api) -> None:
    user = await api.signup()
    # Browsers read "/\evil" as "//evil" (and drop tabs and newlines): all of these would leave the site.
    for target in ["/\\evil.example.com/", "/\\/evil.example.com", "/\t/evil.example.com", "/%5Cevil.example.com"]:
        response = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery",
                                                          "next": target}, follow_redirects=False)
        assert response.headers["location"] in ("/dashboard", target.replace("%5C", "%5C")), target
        assert "\\" not in response.headers["location"] and "\t" not in response.headers["location"], target
        api.client.cookies.clear()


async def test_repeated_wrong_passwords_are_throttled_with_429_and_retry_after(api: Api) -> None:
    user = await api.signup()
    for _ in range(10):
        wrong = await api.client.post("/v1/login", json={"email": user.email, "password": "guess-guess"})
        assert wrong.status_code == 401
    throttled = await api.client.post("/v1/login", json={"email": user.email, "password": "correct horse battery"})
    body = assert_problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0 and "login" in body["detail"].lower()
    page = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery"},
                                 follow_redirects=False)
    assert page.status_code == 429
    # another account is not affected
    other = await api.signup()
    ok = await api.client.post("/v1/login", json={"email": other.email, "password": "correct horse battery"})
    assert ok.status_code == 200
