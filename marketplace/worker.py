"""arq worker: jobs from every domain's tasks.py, with a database and Redis in the job context.

Run as `marketplace worker` (scales horizontally), or in-process by `marketplace serve` when Redis
is embedded. Jobs open their own transaction: `async with ctx["sessionmaker"].begin() as session`.
"""

from __future__ import annotations

from typing import Any

from arq import Worker
from arq.connections import ArqRedis

from marketplace import registry
from marketplace.core import cache
from marketplace.core.db import make_engine, make_sessionmaker
from marketplace.core.redis import arq_settings, make_redis, queue_name
from marketplace.settings import get_settings


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    ctx["settings"] = settings
    ctx["engine"] = make_engine(settings.database_url or "", pool_size=5)
    ctx["sessionmaker"] = make_sessionmaker(ctx["engine"])
    ctx["redis_client"] = make_redis()
    cache.set_publisher(ctx["redis_client"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["redis_client"].aclose()
    await ctx["engine"].dispose()


def worker_options() -> dict[str, Any]:
    registry.import_models()
    return {
        "functions": registry.collect("tasks", "FUNCTIONS"),
        "cron_jobs": registry.collect("tasks", "CRON_JOBS"),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "queue_name": queue_name(),
        "max_jobs": 50,
        "poll_delay": 0.05,
        "job_timeout": 300,
        "keep_result": 60,
        "handle_signals": False,
    }


def build_worker(redis_pool: ArqRedis | None = None) -> Worker:
    options = worker_options()
    if redis_pool is not None:
        return Worker(redis_pool=redis_pool, **options)
    return Worker(redis_settings=arq_settings(), **options)


def __getattr__(name: str) -> Any:
    # `arq marketplace.worker.WorkerSettings` works too; built on access, once the env is known.
    if name == "WorkerSettings":
        return type("WorkerSettings", (), {**worker_options(), "redis_settings": arq_settings()})
    raise AttributeError(name)


def run_worker() -> None:
    options = worker_options()
    options["handle_signals"] = True
    worker = Worker(redis_settings=arq_settings(), **options)
    worker.run()
