"""gateway: per-API call statistics per minute (status page, dashboards)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_stats",
        sa.Column("api_id", sa.String(40), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("upstream_errors", sa.BigInteger(), nullable=False),
        sa.Column("gateway_errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_buckets", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.PrimaryKeyConstraint("api_id", "minute", name=op.f("pk_gateway_stats")),
    )


def downgrade() -> None:
    op.drop_table("gateway_stats")
