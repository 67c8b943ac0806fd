"""arq jobs: the relay (nudged after every commit that wrote an event), one job per delivery
attempt, the sweep (every minute, the backstop) and the retention purge (daily)."""

from __future__ import annotations

from typing import Any

from arq import func
from arq.cron import cron

from webhooks import delivery, relay


def _pool(ctx: dict[str, Any]) -> Any:
    relay.set_enqueuer(ctx["redis"])  # events published by jobs in this worker nudge with its pool
    return ctx["redis"]


async def relay_webhook_events(ctx: dict[str, Any]) -> int:
    return await relay.relay(ctx["sessionmaker"], _pool(ctx))


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    return await delivery.deliver(ctx["sessionmaker"], _pool(ctx), delivery_id)


async def sweep_webhook_deliveries(ctx: dict[str, Any]) -> int:
    return await relay.sweep(ctx["sessionmaker"], _pool(ctx))


async def purge_webhook_history(ctx: dict[str, Any]) -> int:
    return await relay.purge(ctx["sessionmaker"])


assert relay.RELAY_JOB == relay_webhook_events.__name__ and relay.DELIVER_JOB == deliver_webhook.__name__

FUNCTIONS = [
    func(relay_webhook_events, keep_result=0, timeout=120),
    func(deliver_webhook, keep_result=60, timeout=60, max_tries=3),
    sweep_webhook_deliveries,
    purge_webhook_history,
]
CRON_JOBS = [
    cron(sweep_webhook_deliveries, second={30}, run_at_startup=True, timeout=120),
    cron(purge_webhook_history, hour={4}, minute={7}, second={0}, run_at_startup=False),
]
