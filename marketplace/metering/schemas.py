"""Request and response types for usage, meters and partner ingestion."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Aggregation = Literal["count", "sum", "max", "unique", "last"]


class EndpointUsageOut(msgspec.Struct):
    method: str
    path: str
    calls: int
    units: int
    endpoint_id: str | None = None


class QuotaOut(msgspec.Struct):
    limit: int
    hard: bool
    used: int
    remaining: int


class MeterUsageOut(msgspec.Struct):
    meter: str
    aggregation: str
    value: str  # a decimal string (sum, max, last) or an integer string (count, unique)


class SubscriptionUsageOut(msgspec.Struct):
    subscription_id: str
    period_start: datetime
    period_end: datetime
    units: int
    calls: int
    included_units: int
    quota: QuotaOut | None
    by_endpoint: list[EndpointUsageOut]
    estimated_amount: int
    currency: str
    meters: list[MeterUsageOut]


class MeterIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[a-z0-9_.:-]+$",
                                      examples=["tokens"])]
    aggregation: Aggregation = "sum"
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""


class MeterOut(msgspec.Struct):
    id: str
    api_id: str
    name: str
    aggregation: str
    description: str
    created_at: datetime


class UsageEventIn(msgspec.Struct, forbid_unknown_fields=True):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    subscription_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    meter: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    value: float | int | str = 1
    timestamp: datetime | None = None


class UsageEventsIn(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[UsageEventIn], msgspec.Meta(min_length=1, max_length=1000)]


class RejectedOut(msgspec.Struct):
    event_id: str
    reason: str


class UsageEventsOut(msgspec.Struct):
    accepted: list[str]
    duplicates: list[str]
    rejected: list[RejectedOut]


class PartnerUsageRow(msgspec.Struct, omit_defaults=True):
    calls: int
    units: int
    api_id: str
    consumer_id: str | None = None
    subscription_id: str | None = None
    day: str | None = None


class PartnerUsageOut(msgspec.Struct):
    partner_id: str
    start: datetime
    end: datetime
    group_by: str
    data: list[PartnerUsageRow]
