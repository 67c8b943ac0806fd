from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin


class Partner(IdMixin, TimestampMixin, Base):
    """A partner organisation: the tenant that publishes APIs and is paid through Stripe Connect."""

    __tablename__ = "partners"

    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | suspended
    # Overrides PLATFORM_FEE_PERCENT for this partner's APIs (an API may override it again).
    platform_fee_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    stripe_account_id: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    # not_started | pending | restricted | enabled
    connect_status: Mapped[str] = mapped_column(String(16), default="not_started")
    charges_enabled: Mapped[bool] = mapped_column(default=False)
    payouts_enabled: Mapped[bool] = mapped_column(default=False)
    connect_requirements: Mapped[list[str]] = mapped_column(JSONB, default=list)


ROLES = ("owner", "admin", "developer")


class Membership(IdMixin, TimestampMixin, Base):
    __tablename__ = "partner_members"
    __table_args__ = (UniqueConstraint("partner_id", "user_id"),)

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
