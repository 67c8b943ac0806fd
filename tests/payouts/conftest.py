"""Payouts' tests reuse billing's fixtures (own engine on the test loop, Redis, arq pool, job context)."""

from tests.billing.conftest import arq_pool, redis, sessionmaker, stripe_on, usage, worker_ctx  # noqa: F401
