"""Test data for the consuming side: APIs, endpoints and plans inserted as rows (so these tests
do not depend on the publishing routes), a real upstream on loopback, and HTTP helpers."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from marketplace.core.ids import new_id
from marketplace.core.security import encrypt
from tests.helpers import Api, User, unique


@dataclass
class Upstream:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def last(self) -> dict[str, Any]:
        return self.received[-1]


def _upstream_app(state: Upstream) -> web.Application:
    async def record(request: web.Request) -> dict[str, Any]:
        body = await request.read()
        entry = {"method": request.method, "path": request.path_qs, "headers": dict(request.headers),
                 "body": body}
        state.received.append(entry)
        return entry

    async def echo(request: web.Request) -> web.StreamResponse:
        entry = await record(request)
        return web.json_response({"ok": True, "path": entry["path"], "method": entry["method"],
                                  "body_length": len(entry["body"])}, headers={"Set-Cookie": "up=1"})

    async def fail(request: web.Request) -> web.StreamResponse:
        await record(request)
        return web.json_response({"error": "boom"}, status=503)

    async def slow(request: web.Request) -> web.StreamResponse:
        await record(request)
        await asyncio.sleep(3)
        return web.json_response({"late": True})

    async def big(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 16384)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/v1/fail", fail)
    app.router.add_route("*", "/v1/slow", slow)
    app.router.add_route("*", "/v1/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """A real HTTP server on loopback that records what it receives. It runs on its own thread and
    event loop: the test client blocks the test's loop while the app handles a request."""
    state = Upstream(url="")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(_upstream_app(state))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield state
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


DEFAULT_ENDPOINTS = [
    {"method": "GET", "path": "/forecast/{city}", "scope": "weather:read", "weight": 1},
    {"method": "POST", "path": "/forecast/{city}", "scope": "weather:write", "weight": 1},
    {"method": "GET", "path": "/heavy", "scope": "weather:read", "weight": 5},
    {"method": "GET", "path": "/fail", "scope": None, "weight": 1},
    {"method": "GET", "path": "/slow", "scope": None, "weight": 1},
    {"method": "GET", "path": "/big", "scope": None, "weight": 1},
    {"method": "POST", "path": "/upload", "scope": None, "weight": 1},
    {"method": "GET", "path": "/files/{rest:path}", "scope": None, "weight": 1},
]


@dataclass
class World:
    partner_user: User
    partner_id: str
    api_id: str
    slug: str
    plans: dict[str, str]  # name -> plan id
    endpoints: dict[str, str]  # "GET /path" -> endpoint id
    proxy_secret: str


_sessionmaker: Any = None


def db() -> Any:
    """A sessionmaker for the test's own event loop (the app runs in the test client's portal
    thread, whose pooled connections cannot be shared): no pooling, a connection per session."""
    global _sessionmaker
    if _sessionmaker is None:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        from marketplace.core.db import make_sessionmaker
        from marketplace.settings import get_settings

        engine = create_async_engine(get_settings().database_url or "", poolclass=NullPool)
        _sessionmaker = make_sessionmaker(engine)
    return _sessionmaker


def redis_client() -> Any:
    from marketplace.core.redis import make_redis

    return make_redis()


async def make_api(app: Any, api: Api, upstream_url: str, *, plans: list[dict[str, Any]] | None = None,
                   endpoints: list[dict[str, Any]] | None = None, status: str = "published") -> World:
    from partners.publishing.models import Api as ApiRow
    from partners.publishing.models import Endpoint, Plan, PlanVersion, Scope

    owner = await api.signup("Partner")
    partner = await api.partner(owner, unique("Weather"))
    slug = unique("weather")
    secret = "psec_" + secrets.token_hex(16)
    plans = plans if plans is not None else [{"name": "Free", "rate_per_second": 100, "rate_per_minute": 1000,
                                              "quota_limit": 1000, "quota_hard": True}]
    endpoints = endpoints if endpoints is not None else DEFAULT_ENDPOINTS
    world = World(owner, partner["id"], new_id("api"), slug, {}, {}, secret)
    async with db().begin() as session:
        session.add(ApiRow(id=world.api_id, partner_id=partner["id"], slug=slug, name="Weather", description="",
                           upstream_url=upstream_url, tags=[], status=status, proxy_secret_encrypted=encrypt(secret),
                           revision=1))
        await session.flush()
        for name in ("weather:read", "weather:write"):
            session.add(Scope(id=new_id("scope"), api_id=world.api_id, name=name, description=""))
        for ep in endpoints:
            eid = new_id("endpoint")
            world.endpoints[f"{ep['method']} {ep['path']}"] = eid
            session.add(Endpoint(id=eid, api_id=world.api_id, method=ep["method"], path=ep["path"],
                                 scope=ep.get("scope"), weight=ep.get("weight", 1), description=""))
        for spec in plans:
            pid = new_id("plan")
            world.plans[spec["name"]] = pid
            session.add(Plan(id=pid, api_id=world.api_id, status=spec.get("status", "active"), current_version=1))
            await session.flush()
            session.add(PlanVersion(
                id=new_id("plan") + "v", plan_id=pid, version=1, name=spec["name"], currency=spec.get("currency", "usd"),
                monthly_fee=spec.get("monthly_fee", 0), included_units=spec.get("included_units", 0),
                unit_pricing=spec.get("unit_pricing"), quota_limit=spec.get("quota_limit"),
                quota_hard=spec.get("quota_hard", False), rate_per_second=spec.get("rate_per_second"),
                rate_per_minute=spec.get("rate_per_minute"),
                scopes=spec.get("scopes", ["weather:read", "weather:write"])))
    return world


async def subscribe(api: Api, user: User, plan_id: str) -> dict[str, Any]:
    response = await api.client.post("/v1/subscriptions", json={"plan_id": plan_id}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def new_key(api: Api, user: User, subscription_id: str, name: str = "test") -> dict[str, Any]:
    response = await api.client.post("/v1/api-keys", json={"subscription_id": subscription_id, "name": name},
                                     headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def consumer_with_key(app: Any, api: Api, world: World, plan: str | None = None) -> tuple[User, dict, dict]:
    user = await api.signup("Consumer")
    sub = await subscribe(api, user, world.plans[plan or next(iter(world.plans))])
    key = await new_key(api, user, sub["id"])
    return user, sub, key


async def flush(app: Any, min_idle_ms: int = 60000) -> int:
    """Run the usage flush the way the worker does (same function, same Redis and database)."""
    from marketplace.metering.service import flush_usage_stream

    gateway = app.state.gateway
    for _ in range(50):  # let fire-and-forget voids land first
        if not gateway.tasks:
            break
        await asyncio.sleep(0.02)
    redis = redis_client()
    try:
        return await flush_usage_stream(redis, db(), min_idle_ms=min_idle_ms)
    finally:
        await redis.aclose()


async def usage(api: Api, user: User, subscription_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/subscriptions/{subscription_id}/usage", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def dumps(value: Any) -> str:
    return json.dumps(value)
