"""Subscription housekeeping.

Periods are rolled over (or subscriptions set to cancel are ended) by billing's period close
(`marketplace.billing.tasks.close_periods`, every minute), which invoices the period first: a
second roller here would move periods on before they are invoiced. `renew_subscriptions` stays
as a job an operator can enqueue for a deployment without billing, but it is not scheduled.
"""

from __future__ import annotations

from typing import Any

from marketplace.subscriptions import service


async def renew_subscriptions(ctx: dict[str, Any]) -> int:
    async with ctx["sessionmaker"].begin() as session:
        return await service.renew_due(session)


FUNCTIONS = [renew_subscriptions]
CRON_JOBS: list[Any] = []  # billing's close_periods rolls periods after invoicing them
