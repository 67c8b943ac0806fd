"""Scopes and endpoints of an API: names, path templates, required scopes, weights."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Api, assert_problem
from tests.publishing.helpers import Draft, draft, plan_body, post_ok


@pytest.fixture(scope="module")
async def shared(api: Api) -> Draft:
    """One API for the tests that only send invalid scopes and endpoints (nothing is created on it)."""
    return await draft(api)


async def test_scopes_are_created_listed_and_unique_per_api(api: Api) -> None:
    d = await draft(api)
    scope = await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read", "description": "Read"})
    assert scope["id"].startswith("scp_") and scope["name"] == "weather:read" and scope["description"] == "Read"
    again = await api.client.post(f"/v1/apis/{d.id}/scopes", json={"name": "weather:read"}, headers=d.user.headers)
    assert_problem(again, 409, contains="weather:read")
    other = await draft(api)  # the same name on another API is fine
    await post_ok(api, other.user, f"/v1/apis/{other.id}/scopes", {"name": "weather:read"})
    listed = (await api.client.get(f"/v1/apis/{d.id}/scopes", headers=d.user.headers)).json()
    assert [s["name"] for s in listed["data"]] == ["weather:read"]


@pytest.mark.parametrize("name", ["Weather:read", "weather read", ":read", "weather:", "1weather", "weather::read", ""])
async def test_bad_scope_names_are_refused(api: Api, shared: Draft, name: str) -> None:
    d = shared
    response = await api.client.post(f"/v1/apis/{d.id}/scopes", json={"name": name}, headers=d.user.headers)
    assert assert_problem(response, 422)["errors"][0]["field"] == "name"


async def test_a_scope_in_use_cannot_be_deleted(api: Api) -> None:
    d = await draft(api)
    used = await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read"})
    granted = await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:admin"})
    free = await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:write"})
    await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "GET", "path": "/x", "scope": "weather:read"})
    await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", plan_body(scopes=["weather:admin"]))
    by_endpoint = await api.client.delete(f"/v1/apis/{d.id}/scopes/{used['id']}", headers=d.user.headers)
    assert_problem(by_endpoint, 409, contains="GET /x")
    by_plan = await api.client.delete(f"/v1/apis/{d.id}/scopes/{granted['id']}", headers=d.user.headers)
    assert_problem(by_plan, 409, contains="plan 'Pro'")
    assert (await api.client.delete(f"/v1/apis/{d.id}/scopes/{free['id']}", headers=d.user.headers)).status_code == 204
    names = [s["name"] for s in (await api.client.get(f"/v1/apis/{d.id}/scopes", headers=d.user.headers)).json()["data"]]
    assert sorted(names) == ["weather:admin", "weather:read"]
    assert_problem(await api.client.delete(f"/v1/apis/{d.id}/scopes/{free['id']}", headers=d.user.headers), 404)


async def test_endpoints_are_created_with_scope_and_weight(api: Api) -> None:
    d = await draft(api)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read"})
    endpoint = await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {
        "method": "GET", "path": "/forecast/{city}/days/{n}", "scope": "weather:read", "weight": 3,
        "description": "Forecast"})
    assert endpoint["id"].startswith("ep_") and endpoint["weight"] == 3 and endpoint["scope"] == "weather:read"
    plain = await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "POST", "path": "/alerts"})
    assert plain["weight"] == 1 and plain["scope"] is None
    fetched = await api.client.get(f"/v1/apis/{d.id}/endpoints/{endpoint['id']}", headers=d.user.headers)
    assert fetched.json() == endpoint
    listed = (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"]
    assert [e["id"] for e in listed] == [plain["id"], endpoint["id"]]


async def test_an_endpoint_needs_a_scope_that_exists_on_its_api(api: Api) -> None:
    d = await draft(api)
    response = await api.client.post(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers,
                                     json={"method": "GET", "path": "/x", "scope": "weather:read"})
    body = assert_problem(response, 422, contains="scope")
    assert body["errors"][0]["field"] == "scope" and f"/v1/apis/{d.id}/scopes" in body["errors"][0]["message"]


@pytest.mark.parametrize("path", ["forecast", "/forecast/{city", "/forecast/city}", "/a/{}", "/a/{1x}",
                                  "/a/{x}/{x}", "/a/{{x}}", "/a?x=1", "/a//b", "/a b", "/a/{x/y}"])
async def test_bad_path_templates_are_refused(api: Api, shared: Draft, path: str) -> None:
    d = shared
    response = await api.client.post(f"/v1/apis/{d.id}/endpoints", json={"method": "GET", "path": path},
                                     headers=d.user.headers)
    assert assert_problem(response, 422)["errors"][0]["field"] == "path"


@pytest.mark.parametrize(("body", "field"), [
    ({"method": "TRACE", "path": "/x"}, "method"),
    ({"method": "get", "path": "/x"}, "method"),
    ({"method": "GET", "path": "/x", "weight": 0}, "weight"),
    ({"method": "GET", "path": "/x", "weight": 1.5}, "weight"),
    ({"method": "GET", "path": "/x", "weight": "2"}, "weight"),
    ({"method": "GET"}, "path"),
])
async def test_bad_endpoint_fields_are_refused(api: Api, shared: Draft, body: dict[str, Any], field: str) -> None:
    d = shared
    response = await api.client.post(f"/v1/apis/{d.id}/endpoints", json=body, headers=d.user.headers)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == field, problem


async def test_the_same_method_and_path_twice_is_a_conflict(api: Api) -> None:
    d = await draft(api)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "GET", "path": "/x/{id}"})
    again = await api.client.post(f"/v1/apis/{d.id}/endpoints", json={"method": "GET", "path": "/x/{id}"},
                                  headers=d.user.headers)
    assert_problem(again, 409, contains="GET /x/{id}")
    await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "DELETE", "path": "/x/{id}"})


async def test_endpoints_can_be_changed_and_deleted(api: Api) -> None:
    d = await draft(api)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read"})
    endpoint = await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints",
                             {"method": "GET", "path": "/x", "scope": "weather:read"})
    other = await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "GET", "path": "/y"})
    url = f"/v1/apis/{d.id}/endpoints/{endpoint['id']}"
    changed = await api.client.patch(url, json={"weight": 5, "scope": None, "path": "/x/{id}"}, headers=d.user.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["weight"] == 5 and changed.json()["scope"] is None and changed.json()["path"] == "/x/{id}"
    assert_problem(await api.client.patch(url, json={"scope": "nope:x"}, headers=d.user.headers), 422)
    assert_problem(await api.client.patch(url, json={"path": "/y"}, headers=d.user.headers), 409)
    assert_problem(await api.client.patch(url, json={"weight": 0}, headers=d.user.headers), 422)
    assert (await api.client.delete(url, headers=d.user.headers)).status_code == 204
    assert_problem(await api.client.get(url, headers=d.user.headers), 404)
    remaining = (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"]
    assert [e["id"] for e in remaining] == [other["id"]]


async def test_an_endpoint_of_another_api_is_not_found_through_this_one(api: Api) -> None:
    d = await draft(api)
    second = await post_ok(api, d.user, "/v1/apis", {
        "partner_id": d.partner_id, "slug": d.slug + "-2", "name": "Two", "description": "x",
        "upstream_url": "https://upstream.example.com"})
    endpoint = await post_ok(api, d.user, f"/v1/apis/{second['id']}/endpoints", {"method": "GET", "path": "/x"})
    response = await api.client.get(f"/v1/apis/{d.id}/endpoints/{endpoint['id']}", headers=d.user.headers)
    assert_problem(response, 404)
