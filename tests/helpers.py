"""Small helpers that drive the public HTTP API the way a client would."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class User:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def signup(self, name: str = "Test User") -> User:
        email = f"{unique('user')}@example.com"
        response = await self.client.post("/v1/signup", json={"email": email, "password": "correct horse battery",
                                                               "name": name})
        assert response.status_code == 201, response.text
        body = response.json()
        return User(id=body["user"]["id"], email=email, token=body["token"])

    async def partner(self, user: User, name: str = "Acme") -> dict[str, Any]:
        response = await self.client.post("/v1/partners", json={"name": name}, headers=user.headers)
        assert response.status_code == 201, response.text
        return response.json()


def assert_problem(response: Any, status: int, *, contains: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and, optionally, this text in detail)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    if contains:
        assert contains.lower() in body["detail"].lower(), body
    return body
