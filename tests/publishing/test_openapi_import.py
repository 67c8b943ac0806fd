"""Importing scopes and endpoints from an OpenAPI 3 document."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.helpers import Api, assert_problem
from tests.publishing.helpers import draft, post_ok

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Acme Weather", "version": "1.0"},
    "components": {"securitySchemes": {
        "oauth": {"type": "oauth2", "flows": {"clientCredentials": {
            "tokenUrl": "https://auth.example.com/token",
            "scopes": {"weather:read": "Read forecasts", "weather:write": "Report observations"}}}},
        "key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }},
    "security": [{"oauth": ["weather:read"]}],
    "paths": {
        "/forecast/{city}": {
            "parameters": [{"name": "city", "in": "path", "required": True}],
            "get": {"summary": "Forecast for a city", "x-marketplace-weight": 2},
        },
        "/observations": {
            "post": {"summary": "Report an observation",
                     "security": [{"key": []}, {"oauth": ["weather:write", "weather:read"]}]},
            "get": {"description": "Recent observations"},
        },
        "/status": {"get": {"summary": "Health", "security": []}},
    },
}

YAML = """
openapi: 3.0.3
info: {title: Tiny, version: "1"}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows:
        authorizationCode:
          authorizationUrl: https://auth.example.com/authorize
          tokenUrl: https://auth.example.com/token
          scopes:
            maps:read: Read maps
paths:
  /tiles/{z}/{x}/{y}:
    get:
      summary: A map tile
      security:
        - oauth: [maps:read]
"""


async def _import(api: Api, d: Any, body: Any, content_type: str = "application/json") -> Any:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return await api.client.post(f"/v1/apis/{d.id}/import-openapi", content=content,
                                 headers={**d.user.headers, "Content-Type": content_type})


async def test_importing_an_openapi_document_creates_scopes_and_endpoints(api: Api) -> None:
    d = await draft(api)
    response = await _import(api, d, DOCUMENT)
    assert response.status_code == 200, response.text
    result = response.json()
    assert {(s["name"], s["description"]) for s in result["created"]["scopes"]} == {
        ("weather:read", "Read forecasts"), ("weather:write", "Report observations")}
    endpoints = {(e["method"], e["path"]): e for e in result["created"]["endpoints"]}
    assert set(endpoints) == {("GET", "/forecast/{city}"), ("POST", "/observations"), ("GET", "/observations"),
                              ("GET", "/status")}
    assert endpoints[("GET", "/forecast/{city}")]["weight"] == 2
    assert endpoints[("GET", "/forecast/{city}")]["scope"] == "weather:read"  # from the document's security
    assert endpoints[("GET", "/forecast/{city}")]["description"] == "Forecast for a city"
    assert endpoints[("POST", "/observations")]["scope"] == "weather:write"  # first scope of the oauth requirement
    assert endpoints[("GET", "/observations")]["description"] == "Recent observations"
    assert endpoints[("GET", "/status")]["scope"] is None and endpoints[("GET", "/status")]["weight"] == 1
    assert result["skipped"] == []
    listed = (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"]
    assert len(listed) == 4


async def test_importing_again_skips_what_exists_and_reports_it(api: Api) -> None:
    d = await draft(api)
    await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read", "description": "Mine"})
    await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints", {"method": "GET", "path": "/status", "weight": 7})
    first = (await _import(api, d, DOCUMENT)).json()
    assert [s["name"] for s in first["created"]["scopes"]] == ["weather:write"]
    assert {"kind": "scope", "key": "weather:read", "reason": "already exists"} in first["skipped"]
    assert {"kind": "endpoint", "key": "GET /status", "reason": "already exists"} in first["skipped"]
    second = (await _import(api, d, DOCUMENT)).json()
    assert second["created"] == {"scopes": [], "endpoints": []} and len(second["skipped"]) == 6
    scopes = (await api.client.get(f"/v1/apis/{d.id}/scopes", headers=d.user.headers)).json()["data"]
    assert {s["name"]: s["description"] for s in scopes}["weather:read"] == "Mine"  # not overwritten
    status = [e for e in (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"]
              if e["path"] == "/status"]
    assert status[0]["weight"] == 7


async def test_a_yaml_document_is_imported_too(api: Api) -> None:
    d = await draft(api)
    response = await _import(api, d, YAML, "application/yaml")
    assert response.status_code == 200, response.text
    endpoint = response.json()["created"]["endpoints"][0]
    assert (endpoint["method"], endpoint["path"], endpoint["scope"]) == ("GET", "/tiles/{z}/{x}/{y}", "maps:read")


def _broken(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOCUMENT)
    for path, value in changes.items():
        target = doc
        keys = path.split("|")
        for key in keys[:-1]:
            target = target[key]
        if value is None:
            target.pop(keys[-1])
        else:
            target[keys[-1]] = value
    return doc


@pytest.mark.parametrize(("body", "content_type", "expect"), [
    ("", "application/json", "empty"),
    ("openapi: [unclosed", "application/yaml", "neither json nor yaml"),
    ("[1, 2]", "application/json", "object"),
    ({"swagger": "2.0", "paths": {}}, "application/json", "swagger 2.0"),
    (_broken(openapi=None), "application/json", "openapi: 3.x"),
    (_broken(paths={}), "application/json", "no `paths`"),
    (_broken(**{"paths|/forecast/{city}|get|x-marketplace-weight": 0}), "application/json", "x-marketplace-weight"),
    (_broken(**{"paths|/forecast/{city}|get|x-marketplace-weight": "2"}), "application/json", "x-marketplace-weight"),
    (_broken(**{"paths|/bad/{x": {"get": {}}}), "application/json", "path template"),
    (_broken(**{"paths|/observations|post|security": [{"oauth": ["weather:delete"]}]}), "application/json",
     "weather:delete"),
    (_broken(**{"components|securitySchemes|oauth|flows|clientCredentials|scopes": {"Bad Scope": "x"}}),
     "application/json", "not a valid scope name"),
])
async def test_invalid_documents_are_refused_saying_what_is_wrong_and_change_nothing(
        api: Api, body: Any, content_type: str, expect: str) -> None:
    d = await draft(api)
    problem = assert_problem(await _import(api, d, body, content_type), 422, contains=expect)
    assert problem["errors"]
    assert (await api.client.get(f"/v1/apis/{d.id}/endpoints", headers=d.user.headers)).json()["data"] == []
    assert (await api.client.get(f"/v1/apis/{d.id}/scopes", headers=d.user.headers)).json()["data"] == []
