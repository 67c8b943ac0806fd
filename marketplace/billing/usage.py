"""Where billing reads metered usage: `marketplace.metering.service.usage_for_period`.

Metering owns usage (events and rollups); billing only asks it for one subscription's usage per
endpoint in a time range. Until the metering domain is present, no usage is reported (plans still
bill their fees). Tests and the benchmark install another source with `set_source()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.billing.rating import EndpointUsage

UsageSource = Callable[[AsyncSession, str, datetime, datetime], Awaitable[Sequence[EndpointUsage]]]

_override: UsageSource | None = None


async def _no_usage(session: AsyncSession, subscription_id: str, start: datetime, end: datetime) -> list[EndpointUsage]:
    return []


def set_source(source: UsageSource | None) -> None:
    global _override
    _override = source


def _source() -> UsageSource:
    if _override is not None:
        return _override
    try:
        module = importlib.import_module("marketplace.metering.service")
    except ModuleNotFoundError:
        return _no_usage
    return getattr(module, "usage_for_period", _no_usage)


async def usage_for_period(session: AsyncSession, subscription_id: str, start: datetime,
                           end: datetime) -> list[EndpointUsage]:
    rows = await _source()(session, subscription_id, start, end)
    return [EndpointUsage(endpoint_id=getattr(r, "endpoint_id", None), method=r.method, path=r.path,
                          calls=int(r.calls), units=int(r.units)) for r in rows]
