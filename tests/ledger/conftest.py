from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.billing import usage as usage_source
from tests.billing.factories import STRIPE_BASE, WEBHOOK_SECRET, FakeUsage, install_usage


# The app under the test client runs on its own event loop (a portal thread), so tests use their
# own engine, Redis client and arq pool on the test loop.
@pytest.fixture(scope="session")
async def sessionmaker(platform_env: Any) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    from marketplace.core.db import make_engine, make_sessionmaker
    from marketplace.settings import get_settings

    engine = make_engine(get_settings().database_url or "", pool_size=5)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def redis(platform_env: Any) -> AsyncIterator[Any]:
    from marketplace.core.redis import make_redis

    client = make_redis()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def arq_pool(platform_env: Any) -> AsyncIterator[Any]:
    from arq import create_pool

    from marketplace.core.redis import arq_settings, queue_name

    pool = await create_pool(arq_settings(), default_queue_name=queue_name())
    yield pool
    await pool.aclose()


@pytest.fixture
def usage() -> Iterator[FakeUsage]:
    fake = install_usage()
    yield fake
    usage_source.set_source(None)


@pytest.fixture
def stripe_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    """Payments on: a test secret key, the webhook secret, and respx standing in for api.stripe.com."""
    from marketplace.core.stripe import stripe_client
    from marketplace.settings import get_settings

    settings = get_settings()
    monkeypatch.setattr(settings, "stripe_secret_key", "sk_test_billing")
    monkeypatch.setattr(settings, "stripe_webhook_secret", WEBHOOK_SECRET)
    monkeypatch.setattr(settings, "stripe_api_base", STRIPE_BASE)
    stripe_client.cache_clear()
    with respx.mock(base_url=STRIPE_BASE, assert_all_called=False) as router:
        yield router
    stripe_client.cache_clear()


@pytest.fixture
async def worker_ctx(sessionmaker: Any, redis: Any, arq_pool: Any) -> AsyncIterator[dict[str, Any]]:
    """A job context like the worker's, to call job functions directly."""
    yield {"sessionmaker": sessionmaker, "redis_client": redis, "redis": arq_pool}


@pytest.fixture
async def run_jobs(arq_pool: Any) -> Any:
    """Like the shared fixture, but on the test's event loop (the app's arq pool lives on the
    test client's portal loop and cannot be used from here)."""
    from marketplace.worker import build_worker

    async def run() -> int:
        worker = build_worker(arq_pool)
        worker.burst = True
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker.jobs_complete + worker.jobs_failed

    return run
