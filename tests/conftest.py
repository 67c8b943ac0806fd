"""Test harness: real PostgreSQL and Redis, one fresh database and Redis namespace per run.

DATABASE_URL / REDIS_URL are used when set (CI, this machine); otherwise the embedded servers
start under .marketplace/test. Every run creates its own database and drops it afterwards, so
runs never collide, and tests use unique emails and slugs, so they need no cleanup between them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.helpers import Api

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = secrets.token_hex(4)


def _admin_and_test_urls(base: str) -> tuple[str, str, str]:
    """(asyncpg admin DSN, SQLAlchemy URL of the run's database, database name)."""
    name = f"mkt_test_{RUN_ID}"
    parts = urlsplit(base.replace("postgresql+asyncpg://", "postgresql://"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    test = urlunsplit(parts._replace(path=f"/{name}", scheme="postgresql+asyncpg"))
    return admin, test, name


@pytest.fixture(scope="session", autouse=True)
def platform_env() -> Iterator[dict[str, str]]:
    from marketplace.core import embedded

    data_dir = ROOT / ".marketplace" / "test"
    base_db = os.environ.get("DATABASE_URL") or embedded.start_postgres(data_dir)
    redis_url = os.environ.get("REDIS_URL") or embedded.start_redis(data_dir)
    admin, test_url, name = _admin_and_test_urls(base_db)

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    env = {
        "DATABASE_URL": test_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": f"mkt-test-{RUN_ID}",
        "MARKETPLACE_ALLOW_PRIVATE_NETWORKS": "1",
        "MARKETPLACE_DATA_DIR": str(data_dir),
        "MARKETPLACE_LOG_JSON": "1",
        "MARKETPLACE_LOG_LEVEL": "WARNING",
        "MARKETPLACE_INPROCESS_WORKER": "0",
        "MARKETPLACE_BASE_URL": "http://testserver.local",
    }
    for key in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "METRICS_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(env)
    from marketplace.settings import get_settings

    get_settings.cache_clear()
    from alembic import command

    from marketplace.migrations_config import alembic_config

    command.upgrade(alembic_config(test_url), "head")
    yield env

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())

    async def clear_redis() -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        async for key in client.scan_iter(match=f"mkt-test-{RUN_ID}:*", count=1000):
            await client.delete(key)
        await client.aclose()

    asyncio.run(clear_redis())


@pytest.fixture(scope="session")
async def app(platform_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from marketplace.app import create_app

    return create_app()


@pytest.fixture(scope="session")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """An HTTP client over the app, with the app's lifespan run in the tests' own event loop, so
    tests may also use `app.state.sessionmaker` and `app.state.redis` directly."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        # Entered and exited in one task: the lifespan's task groups require it.
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(run_lifespan())
    await asyncio.wait([lifespan, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
    if lifespan.done():
        lifespan.result()  # start-up failed: raise its error
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as test_client:
        yield test_client
    stop.set()
    await lifespan


@pytest.fixture(scope="session")
async def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture
async def run_jobs(app):  # type: ignore[no-untyped-def]
    """Run every queued arq job (and the jobs they enqueue) with a real worker, then return.

    Cron jobs are left out: one firing inside a burst (billing closes periods every minute) would
    act on other tests' data behind their backs; tests call cron functions directly instead."""
    from arq import create_pool

    from marketplace.core.redis import arq_settings, queue_name
    from marketplace.worker import build_worker

    async def run() -> int:
        # The worker gets its own connection pool: closing the worker closes its pool, and the
        # app's pool must stay open for the requests that follow.
        pool = await create_pool(arq_settings(), default_queue_name=queue_name())
        worker = build_worker(pool)
        worker.cron_jobs = []
        worker.burst = True
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker.jobs_complete + worker.jobs_failed

    return run


STRIPE_TEST_BASE = "https://stripe.test"


@pytest.fixture
def stripe_api(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Payments on, with respx standing in for Stripe's HTTP API behind the real stripe SDK."""
    import respx

    from marketplace.core.stripe import stripe_client
    from marketplace.settings import get_settings

    settings = get_settings()
    monkeypatch.setattr(settings, "stripe_secret_key", "sk_test_marketplace")
    monkeypatch.setattr(settings, "stripe_webhook_secret", "whsec_test_marketplace")
    monkeypatch.setattr(settings, "stripe_api_base", STRIPE_TEST_BASE)
    stripe_client.cache_clear()
    with respx.mock(base_url=STRIPE_TEST_BASE, assert_all_called=False) as router:
        yield router
    stripe_client.cache_clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Browser tests skip on a machine without Chromium or Playwright; CI sets
    MARKETPLACE_REQUIRE_BROWSER=1 (it installs both), where such a skip is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and "test_browser" in item.nodeid and os.environ.get("MARKETPLACE_REQUIRE_BROWSER") == "1":
        report.outcome = "failed"
        report.longrepr = f"browser test skipped in CI: {report.longrepr}"
