"""payout batches and lines

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payout_batches",
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=False),
        sa.Column("approved_by", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconciliation", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_payout_batches_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_batches")),
    )
    op.create_table(
        "payout_lines",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("partner_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("invoice_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column("stripe_transfer_id", sa.String(length=64), nullable=True),
        sa.Column("amount_reversed", sa.BigInteger(), nullable=False),
        sa.Column("held_by", sa.String(length=40), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["payout_batches.id"], name=op.f("fk_payout_lines_batch_id_payout_batches"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"], name=op.f("fk_payout_lines_partner_id_partners"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_lines")),
    )
    op.create_index("ix_payout_lines_batch", "payout_lines", ["batch_id", "id"])
    op.create_index("ix_payout_lines_partner", "payout_lines", ["partner_id", "id"])
    op.create_index(op.f("ix_payout_lines_stripe_transfer_id"), "payout_lines", ["stripe_transfer_id"])
    op.create_table(
        "payout_claims",
        sa.Column("ledger_transaction_id", sa.String(length=40), nullable=False),
        sa.Column("line_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["ledger_transaction_id"], ["ledger_transactions.id"],
                                name=op.f("fk_payout_claims_ledger_transaction_id_ledger_transactions")),
        sa.ForeignKeyConstraint(["line_id"], ["payout_lines.id"], name=op.f("fk_payout_claims_line_id_payout_lines"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ledger_transaction_id", name=op.f("pk_payout_claims")),
    )
    op.create_index(op.f("ix_payout_claims_line_id"), "payout_claims", ["line_id"])


def downgrade() -> None:
    op.drop_table("payout_claims")
    op.drop_table("payout_lines")
    op.drop_table("payout_batches")
