from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.gateway.factories import upstream  # noqa: F401  (fixture)
from tests.helpers import User

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf[_-]token" (?:value|content)="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found[1]


class Browser:
    """A logged-in browser session: its own cookie jar over the same app."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)

    async def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.client.post(url, data=data or {}, **kw)

    async def csrf(self, url: str = "/dashboard") -> str:
        page = await self.get(url)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local")


@pytest.fixture
async def browser_for(app: Any, client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    opened: list[httpx.AsyncClient] = []

    async def login(user: User) -> Browser:
        c = _client(app)
        opened.append(c)
        response = await c.post("/login", data={"email": user.email, "password": PASSWORD, "next": "/dashboard"})
        assert response.status_code == 303, response.text
        return Browser(c)

    yield login
    for c in opened:
        await c.aclose()


@pytest.fixture
async def anonymous(app: Any, client: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    c = _client(app)
    yield Browser(c)
    await c.aclose()
