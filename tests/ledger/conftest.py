"""The ledger's tests use billing's fixtures (their own engine on the test loop, an operator…)."""

from tests.billing.conftest import arq_pool, redis, sessionmaker, usage, worker_ctx  # noqa: F401
