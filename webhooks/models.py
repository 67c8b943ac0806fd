"""Webhook endpoints, deliveries (one per event and endpoint and trigger) and attempts.

- `WebhookEndpoint`: owned by a partner (`partner_id`) or a consumer (`consumer_id`), never both.
- `WebhookDelivery`: one event to one endpoint. `job_id` is the arq job that makes the next
  attempt (the delivery id for the first, `{delivery_id}:{n}` for attempt n); NULL means "not
  handed to arq yet" and the relay picks it up. `lease_until` stops two jobs sending at once.
- `WebhookAttempt`: every HTTP attempt, kept for the deliveries log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column
from ulid import ULID

from marketplace.core.db import Base, IdMixin, TimestampMixin, utcnow


def new_attempt_id() -> str:
    # Attempts are internal rows (not in core.ids' public prefixes); ULID so id order = time order.
    return f"att_{str(ULID()).lower()}"


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint("(partner_id IS NULL) <> (consumer_id IS NULL)", name="one_owner"),
        Index("ix_webhook_endpoints_partner", "partner_id", "id"),
        Index("ix_webhook_endpoints_consumer", "consumer_id", "id"),
    )

    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), default=None)
    consumer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(80)))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # After a rotation the old secret keeps signing (alongside the new one) until this time.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # The first failed attempt since the last success: the auto-disable clock.
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(IdMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_pending", "next_attempt_at", postgresql_where="status = 'pending'"),
        Index("ix_webhook_deliveries_unqueued", "created_at",
              postgresql_where="status = 'pending' AND job_id IS NULL"),
        Index("ix_webhook_deliveries_event", "event_id"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(80))
    trigger: Mapped[str] = mapped_column(String(16), default="event")  # event | resend | replay | test
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | succeeded | failed | canceled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (
        Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_attempts_delivery", "delivery_id"),
        Index("ix_webhook_attempts_at", "at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_attempt_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(80))
    attempt: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    succeeded: Mapped[bool] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    response_snippet: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
