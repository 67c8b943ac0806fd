"""API publishing: APIs, their scopes and endpoints, and priced plans (versioned).

A `Plan` keeps a stable public id (`pln_…`); its prices and limits live in `PlanVersion` rows.
Editing a plan that nobody subscribes to changes its current version in place; editing one with
subscribers adds a new version, and existing subscriptions keep pointing at theirs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Computed, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin

API_STATUSES = ("draft", "published", "suspended")


class Api(IdMixin, TimestampMixin, Base):
    __tablename__ = "apis"
    __table_args__ = (
        Index("ix_apis_search", "search", postgresql_using="gin"),
        Index("ix_apis_tags", "tags", postgresql_using="gin"),
        Index("ix_apis_status_id", "status", "id"),
    )

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    upstream_url: Mapped[str] = mapped_column(String(2048))
    category: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    # Sent to the upstream as X-Marketplace-Proxy-Secret so it can tell our calls from others';
    # encrypted at rest (core.security.encrypt), readable by the partner's members.
    proxy_secret_encrypted: Mapped[str] = mapped_column(Text)
    # Overrides the partner's (and the platform's) fee percent for this API.
    platform_fee_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    # Bumped on every change the gateway caches (status, upstream, endpoints, plans): cache key part.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(name, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(category, '')), 'B') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'C')",
            persisted=True,
        ),
    )


class Scope(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_scopes"
    __table_args__ = (UniqueConstraint("api_id", "name"),)

    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))  # e.g. weather:read
    description: Mapped[str] = mapped_column(Text, default="")


class Endpoint(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_endpoints"
    __table_args__ = (UniqueConstraint("api_id", "method", "path"),)

    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(8))  # GET, POST, …, upper case
    path: Mapped[str] = mapped_column(String(512))  # a template: /forecast/{city}
    scope: Mapped[str | None] = mapped_column(String(100), default=None)  # required scope name
    weight: Mapped[int] = mapped_column(Integer, default=1)  # metered units per call
    description: Mapped[str] = mapped_column(Text, default="")


class Plan(IdMixin, TimestampMixin, Base):
    __tablename__ = "plans"

    api_id: Mapped[str] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    current_version: Mapped[int] = mapped_column(Integer, default=1)


class PlanVersion(IdMixin, TimestampMixin, Base):
    """The terms of a plan at one version. Immutable once a subscription points at it."""

    __tablename__ = "plan_versions"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    monthly_fee: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units
    included_units: Mapped[int] = mapped_column(BigInteger, default=0)
    # {"model": "per_unit"|"graduated"|"volume"|"package", ...} as in API.md, or None: no usage charge.
    unit_pricing: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    quota_limit: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quota_hard: Mapped[bool] = mapped_column(default=False)
    rate_per_second: Mapped[int | None] = mapped_column(Integer, default=None)
    rate_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list)
