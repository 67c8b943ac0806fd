"""The event outbox and its one entry point, `publish()`.

`publish()` adds the event row to the caller's session, so the event commits if and only if the
change it describes commits (a transactional outbox). The webhooks domain relays new rows to
arq and delivers them; nothing else needs to know how.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, utcnow
from marketplace.core.ids import new_id


class Event(IdMixin, Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unrelayed", "created_at", postgresql_where="relayed_at IS NULL"),
        Index("ix_events_partner", "partner_id", "id"),
        Index("ix_events_consumer", "consumer_id", "id"),
    )

    type: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # The owners who may receive it: a partner org, a consumer (user), or both.
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    consumer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column(default=None)


def publish(
    session: AsyncSession,
    type: str,
    data: dict[str, Any],
    *,
    partner_id: str | None = None,
    consumer_id: str | None = None,
) -> Event:
    """Record an event in the caller's transaction; it is delivered after the commit."""
    event = Event(id=new_id("event"), type=type, data=data, partner_id=partner_id,
                  consumer_id=consumer_id, created_at=utcnow())
    session.add(event)
    return event
