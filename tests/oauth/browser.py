"""A tiny browser for the OAuth pages: keeps cookies, follows nothing by itself, and fills and
submits HTML forms the way a user agent does (every input, plus the clicked button)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

BASE_URL = "http://testserver.local"


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
        elif self.forms and tag == "input" and a.get("name"):
            self.forms[-1].fields.append((a["name"], a.get("value", "")))
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def parse_form(html: str) -> Form:
    parser = _FormParser()
    parser.feed(html)
    assert parser.forms, html
    return parser.forms[0]


def transport(test_client: httpx.AsyncClient) -> Any:
    """Another client's way into the app under test (the session client's ASGI transport)."""
    return test_client._transport


class Browser:
    def __init__(self, test_client: httpx.AsyncClient) -> None:
        self.http = httpx.AsyncClient(transport=transport(test_client), base_url=BASE_URL)

    async def get(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def submit(self, page: httpx.Response, overrides: dict[str, str] | None = None,
                     button: tuple[str, str] | None = None, drop: tuple[str, ...] = ()) -> httpx.Response:
        form = parse_form(page.text)
        values = dict(form.fields)
        values.update(overrides or {})
        data = [(k, v) for k, v in values.items() if k not in drop]
        if button:
            assert button in form.buttons, form.buttons
            data.append(button)
        return await self.http.post(urljoin(str(page.url), form.action), content=urlencode(data),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})

    async def login(self, email: str, password: str = "correct horse battery",  # noqa: S107
                    next_url: str = "/dashboard") -> None:
        page = await self.get(f"/login?next={next_url}")
        response = await self.submit(page, {"email": email, "password": password})
        assert response.status_code == 303, response.text

    async def aclose(self) -> None:
        """Nothing to release: the transport belongs to the session's test client."""
