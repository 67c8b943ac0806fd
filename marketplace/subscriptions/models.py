"""Subscriptions (a consumer on a plan version of an API) and their API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin

# active: may call; past_due: payment failed, still allowed during the grace period;
# unpaid: grace period over, the gateway refuses with 402; canceled: ended.
SUBSCRIPTION_STATUSES = ("active", "past_due", "unpaid", "canceled")
LIVE_STATUSES = ("active", "past_due", "unpaid")


class Subscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        # One live subscription per consumer and API; a plan change updates it in place.
        Index("uq_subscriptions_live", "consumer_id", "api_id", unique=True,
              postgresql_where=text("status <> 'canceled'")),
        Index("ix_subscriptions_period_end", "current_period_end"),
    )

    consumer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"), index=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("plan_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(default=None)
    past_due_since: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped on every change the gateway caches (status, plan): part of its cache key.
    revision: Mapped[int] = mapped_column(Integer, default=1)


class ApiKey(IdMixin, TimestampMixin, Base):
    """An API key for one subscription: shown once, stored as SHA-256 with a lookup prefix."""

    __tablename__ = "api_keys"

    consumer_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set when the key is rotated: it keeps working until then (the overlap window).
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
