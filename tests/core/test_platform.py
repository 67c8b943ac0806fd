from __future__ import annotations

from tests.helpers import Api, assert_problem


async def test_health_and_ready_check_postgres_and_redis(api: Api) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok"}
    ready = await api.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["redis"] == "ok"


async def test_every_response_carries_a_request_id(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.headers["x-request-id"].startswith("req_")


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    assert_problem(await api.client.get("/v1/nope"), 404)
    response = await api.client.put("/v1/signup", json={})
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_openapi_document_and_docs_are_served(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    assert "/v1/signup" in doc["paths"] and "/v1/partners" in doc["paths"]
    assert (await api.client.get("/schema/swagger")).status_code == 200


async def test_idempotency_key_replays_the_first_response(api: Api) -> None:
    user = await api.signup()
    headers = {**user.headers, "Idempotency-Key": "create-partner-1"}
    first = await api.client.post("/v1/partners", json={"name": "Once"}, headers=headers)
    second = await api.client.post("/v1/partners", json={"name": "Once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.headers["idempotent-replayed"] == "true"
    assert len((await api.client.get("/v1/partners", headers=user.headers)).json()) == 1
    other_body = await api.client.post("/v1/partners", json={"name": "Other"}, headers=headers)
    assert_problem(other_body, 422, contains="different request")


async def test_idempotency_keys_are_scoped_to_the_caller(api: Api) -> None:
    alice, bob = await api.signup(), await api.signup()
    a = await api.client.post("/v1/partners", json={"name": "Same"}, headers={**alice.headers, "Idempotency-Key": "k"})
    b = await api.client.post("/v1/partners", json={"name": "Same"}, headers={**bob.headers, "Idempotency-Key": "k"})
    assert a.json()["id"] != b.json()["id"]


async def test_a_cursor_that_is_not_an_id_is_a_422_not_a_500(api: Api) -> None:
    user = await api.signup()
    for path in ("/v1/apis", "/v1/subscriptions", "/v1/catalog/apis"):
        response = await api.client.get(path, params={"starting_after": "api_x\x00y"}, headers=user.headers)
        assert_problem(response, 422, contains="starting_after")


async def test_stored_idempotent_responses_are_encrypted_at_rest(api: Api, app) -> None:  # type: ignore[no-untyped-def]
    user = await api.signup()
    response = await api.client.post("/v1/tokens", json={"name": "once"},
                                     headers={**user.headers, "Idempotency-Key": "secret-once"})
    secret = response.json()["token"]
    from marketplace.core.redis import key

    found = False
    async for stored_key in app.state.redis.scan_iter(match=key("idem", "*")):
        value = await app.state.redis.get(stored_key)
        assert secret.encode() not in value
        found = True
    assert found


async def test_openapi_documents_errors_as_problem_json_on_every_v1_operation(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    assert "Problem" in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            errors = {code: r for code, r in op["responses"].items() if code.startswith(("4", "5"))}
            if "{" in path or method != "get":
                assert errors, (method, path)
            for code, response in errors.items():
                content = response["content"]
                assert list(content) == ["application/problem+json"], (method, path, code)
                media = content["application/problem+json"]
                assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
                assert media["examples"], (method, path, code)
    assert "401" in doc["paths"]["/v1/me"]["get"]["responses"]
    assert "422" in doc["paths"]["/v1/partners"]["post"]["responses"]
    assert "401" not in doc["paths"]["/v1/catalog/apis"]["get"]["responses"]


async def test_an_oversized_body_with_an_idempotency_key_is_refused_with_413_not_buffered(api: Api) -> None:
    user = await api.signup()
    big = b'{"name": "' + b"x" * 10_500_000 + b'"}'
    response = await api.client.post("/v1/partners", content=big,
                                     headers={**user.headers, "Idempotency-Key": "big-1",
                                              "Content-Type": "application/json"})
    assert_problem(response, 413)


async def test_the_idempotency_middleware_stops_reading_a_body_past_the_size_limit(app, api: Api) -> None:  # type: ignore[no-untyped-def]
    """It buffers the body to fingerprint it: without a cap, one request could fill the memory."""
    from marketplace.core.middleware import IdempotencyMiddleware

    chunks_read = 0

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 1_000_000, "more_body": chunks_read < 1000}

    sent: list[dict] = []

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    async def downstream(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("an oversized body must not reach the app")

    scope = {"type": "http", "method": "POST", "path": "/v1/partners", "app": app,
             "headers": [(b"idempotency-key", b"huge"), (b"authorization", b"Bearer x")]}
    await IdempotencyMiddleware(downstream)(scope, receive, send)
    assert chunks_read <= 12, chunks_read
    assert sent[0]["status"] == 413


async def test_control_characters_in_catalog_filters_are_never_a_500(api: Api) -> None:
    for params in ({"tag": "a\x00b"}, {"q": "x\x00"}, {"category": "\x00"}):
        response = await api.client.get("/v1/catalog/apis", params=params)
        assert response.status_code in (200, 422), (params, response.text)
