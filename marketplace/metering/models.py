"""The usage ledger: one append-only row per billable (or voided) gateway call, hourly rollups,
partner-defined meters and their events, and the quota alerts already sent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Numeric, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, utcnow

AGGREGATIONS = ("count", "sum", "max", "unique", "last")


class UsageEvent(Base):
    """A gateway call. `id` is the gateway's request id: the idempotency key of the ledger."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_sub_time", "subscription_id", "occurred_at"),
        Index("ix_usage_events_partner_time", "partner_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    consumer_id: Mapped[str] = mapped_column(String(40))
    partner_id: Mapped[str] = mapped_column(String(40))
    api_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    endpoint_id: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))  # the endpoint's template, not the raw path
    units: Mapped[int] = mapped_column(BigInteger)
    # False when the call failed (upstream 5xx, 502/504): kept for the audit trail, never billed.
    billable: Mapped[bool] = mapped_column(default=True)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageRollup(Base):
    """Billable calls and units per subscription, endpoint and hour (maintained incrementally by
    the flush job; `metering.service.rebuild_rollups` recomputes them from the raw events)."""

    __tablename__ = "usage_rollups"
    __table_args__ = (Index("ix_usage_rollups_partner_hour", "partner_id", "hour"),)

    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"),
                                                 primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    consumer_id: Mapped[str] = mapped_column(String(40))
    partner_id: Mapped[str] = mapped_column(String(40))
    api_id: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    units: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageAlert(Base):
    """Quota alerts already published (80 and 100 percent), at most once per period."""

    __tablename__ = "usage_alerts"

    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"),
                                                 primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    threshold: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Meter(Base):
    """A partner-defined meter of an API (e.g. `tokens`, aggregated by sum)."""

    __tablename__ = "meters"
    __table_args__ = (UniqueConstraint("api_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    aggregation: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MeterEvent(Base):
    """A usage event a partner reported; `(api_id, event_id)` is its idempotency key."""

    __tablename__ = "meter_events"
    __table_args__ = (
        UniqueConstraint("api_id", "event_id"),
        Index("ix_meter_events_sub_meter_time", "subscription_id", "meter_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(200))
    partner_id: Mapped[str] = mapped_column(String(40))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    consumer_id: Mapped[str] = mapped_column(String(40))
    meter_id: Mapped[str] = mapped_column(ForeignKey("meters.id", ondelete="CASCADE"))
    value: Mapped[Decimal] = mapped_column(Numeric(38, 12))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


