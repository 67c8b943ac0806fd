"""Subscription housekeeping: renew (or end) subscriptions whose period is over."""

from __future__ import annotations

from typing import Any

from arq.cron import cron

from marketplace.subscriptions import service


async def renew_subscriptions(ctx: dict[str, Any]) -> int:
    async with ctx["sessionmaker"].begin() as session:
        return await service.renew_due(session)


FUNCTIONS = [renew_subscriptions]
CRON_JOBS = [cron(renew_subscriptions, second={7}, run_at_startup=False)]
