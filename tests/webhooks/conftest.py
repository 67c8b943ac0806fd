"""A real HTTP receiver on 127.0.0.1 (aiohttp) that records every request and answers as scripted,
and helpers that publish events the way other domains do."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.core.db import make_engine, make_sessionmaker
from marketplace.core.events import publish


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    base: str
    requests: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    scripts: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def url(self, name: str | None = None) -> tuple[str, str]:
        name = name or secrets.token_hex(6)
        return name, f"{self.base}/{name}"

    def script(self, name: str, *answers: tuple[int, dict[str, str]]) -> None:
        """Answer the next requests to `name` with these (status, headers); 200 afterwards."""
        self.scripts[name] = list(answers)


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(base="")

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        rec.requests[name].append(Received(dict(request.headers), await request.read(), time.monotonic()))
        script = rec.scripts.get(name)
        status, headers = script.pop(0) if script else (200, {})
        return web.Response(status=status, headers=headers, text=f"answer {status}")

    app = web.Application()
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.base = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()


@pytest.fixture(scope="session")
async def db(platform_env: dict[str, str]) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker of the tests' own, for arranging and inspecting rows directly."""
    engine = make_engine(platform_env["DATABASE_URL"], pool_size=5)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def emit(db: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    """Publish an event in its own committed transaction, as a domain service would."""

    async def _emit(type_: str, data: dict[str, Any] | None = None, *, partner_id: str | None = None,
                    consumer_id: str | None = None) -> str:
        async with db.begin() as session:
            event = publish(session, type_, data or {"n": 1}, partner_id=partner_id, consumer_id=consumer_id)
        return event.id

    return _emit


@pytest.fixture
def retry_schedule(monkeypatch):  # type: ignore[no-untyped-def]
    """Set WEBHOOK_RETRY_SCHEDULE for one test (e.g. "0,0,0": three immediate attempts)."""
    from marketplace.settings import get_settings

    def _set(value: str) -> None:
        monkeypatch.setattr(get_settings(), "webhook_retry_schedule", value)

    return _set
