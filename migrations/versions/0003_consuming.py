"""metering: usage events and rollups

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("consumer_id", sa.String(40), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("api_id", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_usage_events_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_events")),
    )
    op.create_index("ix_usage_events_sub_time", "usage_events", ["subscription_id", "occurred_at"])
    op.create_index("ix_usage_events_partner_time", "usage_events", ["partner_id", "occurred_at"])

    op.create_table(
        "usage_rollups",
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("hour", TZ, nullable=False),
        sa.Column("consumer_id", sa.String(40), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("api_id", sa.String(40), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_usage_rollups_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "endpoint_id", "hour", name=op.f("pk_usage_rollups")),
    )
    op.create_index("ix_usage_rollups_partner_hour", "usage_rollups", ["partner_id", "hour"])

    op.create_table(
        "usage_alerts",
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("period_start", TZ, nullable=False),
        sa.Column("threshold", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_usage_alerts_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "period_start", "threshold", name=op.f("pk_usage_alerts")),
    )

    op.create_table(
        "meters",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("api_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("aggregation", sa.String(16), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.id"], name=op.f("fk_meters_api_id_apis"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint("api_id", "name", name=op.f("uq_meters_api_id")),
    )
    op.create_index(op.f("ix_meters_api_id"), "meters", ["api_id"])

    op.create_table(
        "meter_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("api_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("partner_id", sa.String(40), nullable=False),
        sa.Column("subscription_id", sa.String(40), nullable=False),
        sa.Column("consumer_id", sa.String(40), nullable=False),
        sa.Column("meter_id", sa.String(40), nullable=False),
        sa.Column("value", sa.Numeric(38, 12), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.id"], name=op.f("fk_meter_events_api_id_apis"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_meter_events_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["meter_id"], ["meters.id"], name=op.f("fk_meter_events_meter_id_meters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_events")),
        sa.UniqueConstraint("api_id", "event_id", name=op.f("uq_meter_events_api_id")),
    )
    op.create_index("ix_meter_events_sub_meter_time", "meter_events", ["subscription_id", "meter_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("meter_events")
    op.drop_table("meters")
    op.drop_table("usage_alerts")
    op.drop_table("usage_rollups")
    op.drop_table("usage_events")
