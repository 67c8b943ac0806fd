from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.billing import usage as usage_source
from tests.billing.factories import FakeUsage, install_usage
from tests.gateway.factories import upstream  # noqa: F401  (fixture)


# Tests' own engine, Redis client and arq pool (jobs called directly get a context like the worker's).
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
def stripe_on(stripe_api: respx.MockRouter) -> respx.MockRouter:
    """Payments on (the shared `stripe_api` fixture: test keys, respx standing in for Stripe)."""
    return stripe_api


@pytest.fixture
async def worker_ctx(sessionmaker: Any, redis: Any, arq_pool: Any) -> AsyncIterator[dict[str, Any]]:
    """A job context like the worker's, to call job functions directly."""
    yield {"sessionmaker": sessionmaker, "redis_client": redis, "redis": arq_pool}
