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


BatchSource = Callable[[AsyncSession, Sequence[tuple[str, datetime, datetime]]],
                       Awaitable[dict[str, Sequence[EndpointUsage]]]]
_batch_override: BatchSource | None = None


def set_batch_source(source: BatchSource | None) -> None:
    """A source that answers many (subscription, start, end) at once (one query for a whole batch)."""
    global _batch_override
    _batch_override = source


async def usage_for_periods(session: AsyncSession,
                            requests: Sequence[tuple[str, datetime, datetime]]) -> dict[str, list[EndpointUsage]]:
    """Usage for many subscriptions (each with its own range). Uses a batch source when there is one
    (`set_batch_source`, or `metering.service.usage_for_periods`), else asks one subscription at a time."""
    batch: BatchSource | None = _batch_override
    if batch is None and _override is None:
        try:
            batch = getattr(importlib.import_module("marketplace.metering.service"), "usage_for_periods", None)
        except ModuleNotFoundError:
            batch = None
    if batch is not None and requests:
        found = await batch(session, requests)
        return {sub_id: [EndpointUsage(endpoint_id=getattr(r, "endpoint_id", None), method=r.method, path=r.path,
                                       calls=int(r.calls), units=int(r.units)) for r in found.get(sub_id, [])]
                for sub_id, _, _ in requests}
    return {sub_id: await usage_for_period(session, sub_id, start, end) for sub_id, start, end in requests}
