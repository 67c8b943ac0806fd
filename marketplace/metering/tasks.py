"""Metering jobs: flush the gateway's usage stream to PostgreSQL every few seconds; rebuild the
hourly rollups from raw events on demand (enqueue `rebuild_usage_rollups`)."""

from __future__ import annotations

from typing import Any

from arq.cron import cron

from marketplace.metering import service
from marketplace.settings import get_settings


async def flush_usage(ctx: dict[str, Any], min_idle_ms: int | None = None) -> int:
    settings = get_settings()
    return await service.flush_usage_stream(
        ctx["redis_client"], ctx["sessionmaker"], batch=settings.usage_flush_batch,
        min_idle_ms=settings.usage_claim_idle_ms if min_idle_ms is None else min_idle_ms,
    )


async def rebuild_usage_rollups(ctx: dict[str, Any], subscription_id: str | None = None) -> int:
    async with ctx["sessionmaker"].begin() as session:
        return await service.rebuild_rollups(session, subscription_id)


def _every() -> set[int]:
    step = get_settings().usage_flush_every_seconds
    return set(range(0, 60, step))


FUNCTIONS = [flush_usage, rebuild_usage_rollups]
CRON_JOBS = [cron(flush_usage, second=_every(), run_at_startup=True, unique=True, timeout=120)]
