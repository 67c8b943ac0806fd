from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from tests.gateway.factories import upstream  # noqa: F401  (fixture, for the gateway bearer tests)
from tests.helpers import Api, User
from tests.oauth.browser import BASE_URL, Browser, transport
from tests.oauth.factories import PublishedApi, published_api, subscribe

# authlib's client refuses http:// endpoints unless told this is a test.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

REDIRECT_URI = "https://app.example.com/callback"


@dataclass
class World:
    app: Any
    api: Api
    consumer: User
    weather: PublishedApi
    subscription_id: str
    meta: dict[str, Any]

    async def create_app(self, *, public: bool = False, owner: User | None = None, **extra: Any) -> dict[str, Any]:
        body = {"name": "Weather dashboard", "redirect_uris": [REDIRECT_URI], "public": public, **extra}
        response = await self.api.client.post("/v1/apps", json=body, headers=(owner or self.consumer).headers)
        assert response.status_code == 201, response.text
        return response.json()

    def oauth_client(self, created: dict[str, Any], scope: str = "weather:read") -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=created["client_id"], client_secret=created.get("client_secret"), scope=scope,
            redirect_uri=REDIRECT_URI, code_challenge_method="S256",
            token_endpoint_auth_method="none" if created["public"] else "client_secret_basic",
            transport=transport(self.api.client), base_url=BASE_URL,
        )

    async def redis(self, command: str, *args: Any) -> Any:
        return await getattr(self.app.state.redis, command)(*args)

    async def browser(self, user: User | None = None) -> Browser:
        browser = Browser(self.api.client)
        await browser.login((user or self.consumer).email)
        return browser

    async def authorize(self, client: AsyncOAuth2Client, browser: Browser, decision: str = "allow",
                        **params: Any) -> tuple[httpx.Response, str]:
        """Walk the authorization endpoint and (if shown) the consent page; return the final response
        (a redirect to the app, normally) and the PKCE verifier used."""
        verifier = generate_token(48)
        url, _ = client.create_authorization_url(self.meta["authorization_endpoint"], code_verifier=verifier, **params)
        response = await browser.get(url)
        if response.status_code == 200 and "decision" in response.text:
            response = await browser.submit(response, button=("decision", decision))
        return response, verifier


@pytest_asyncio.fixture(loop_scope="session")
async def world(app: Any, api: Api) -> World:
    weather = await published_api(app, api)
    consumer = await api.signup("Consumer")
    sub_id = await subscribe(app, api, consumer, weather)
    meta = (await api.client.get("/.well-known/oauth-authorization-server")).json()
    return World(app, api, consumer, weather, sub_id, meta)
