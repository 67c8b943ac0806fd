"""billing: invoices, Stripe customers and inbox, ledger, budgets

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The ledger's two invariants, enforced by the database as well as by ledger.service.post:
# entries are immutable, and each transaction's entries sum to zero (checked at commit).
LEDGER_TRIGGERS = [
    """CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger entries are immutable: post a reversing transaction instead';
END $$""",
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()""",
    """CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
  SELECT coalesce(sum(amount), 0) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
  IF total <> 0 THEN
    RAISE EXCEPTION 'ledger transaction % is unbalanced by %', NEW.transaction_id, total;
  END IF;
  RETURN NULL;
END $$""",
    """CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced()""",
]


def upgrade() -> None:
    op.execute("CREATE SEQUENCE invoice_number_seq START WITH 1001")
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('owner_id', sa.String(length=40), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('kind', 'owner_id', 'currency', name=op.f('uq_ledger_accounts_kind'))
    )
    op.create_table('ledger_transactions',
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('invoice_id', sa.String(length=40), nullable=True),
    sa.Column('partner_id', sa.String(length=40), nullable=True),
    sa.Column('memo', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('kind', 'reference', name=op.f('uq_ledger_transactions_kind'))
    )
    op.create_index(op.f('ix_ledger_transactions_invoice_id'), 'ledger_transactions', ['invoice_id'], unique=False)
    op.create_table('stripe_events',
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('type', sa.String(length=80), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('handled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events'))
    )
    op.create_index('ix_stripe_events_unprocessed', 'stripe_events', ['received_at'], unique=False, postgresql_where='processed_at IS NULL')
    op.create_table('billing_customers',
    sa.Column('consumer_id', sa.String(length=40), nullable=False),
    sa.Column('stripe_customer_id', sa.String(length=64), nullable=True),
    sa.Column('default_payment_method', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['users.id'], name=op.f('fk_billing_customers_consumer_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('consumer_id', name=op.f('pk_billing_customers')),
    sa.UniqueConstraint('stripe_customer_id', name=op.f('uq_billing_customers_stripe_customer_id'))
    )
    op.create_table('ledger_entries',
    sa.Column('transaction_id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_entries_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_entries_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    op.create_index('ix_ledger_entries_account_created', 'ledger_entries', ['account_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_ledger_entries_transaction_id'), 'ledger_entries', ['transaction_id'], unique=False)
    op.create_table('billing_budgets',
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('consumer_id', sa.String(length=40), nullable=False),
    sa.Column('monthly_amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('alert_thresholds', postgresql.ARRAY(sa.Integer()), nullable=False),
    sa.Column('hard_cap', sa.Boolean(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('notified_thresholds', postgresql.ARRAY(sa.Integer()), nullable=False),
    sa.Column('capped', sa.Boolean(), nullable=False),
    sa.Column('last_estimate', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['users.id'], name=op.f('fk_billing_budgets_consumer_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_billing_budgets_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_budgets')),
    sa.UniqueConstraint('subscription_id', name=op.f('uq_billing_budgets_subscription_id'))
    )
    op.create_index(op.f('ix_billing_budgets_consumer_id'), 'billing_budgets', ['consumer_id'], unique=False)
    op.create_table('billing_plan_changes',
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('from_plan_version_id', sa.String(length=40), nullable=False),
    sa.Column('to_plan_version_id', sa.String(length=40), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['from_plan_version_id'], ['plan_versions.id'], name=op.f('fk_billing_plan_changes_from_plan_version_id_plan_versions')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_billing_plan_changes_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['to_plan_version_id'], ['plan_versions.id'], name=op.f('fk_billing_plan_changes_to_plan_version_id_plan_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_plan_changes'))
    )
    op.create_index('ix_billing_plan_changes_sub_at', 'billing_plan_changes', ['subscription_id', 'changed_at'], unique=False)
    op.create_table('invoices',
    sa.Column('number', sa.BigInteger(), server_default=sa.text("nextval('invoice_number_seq')"), nullable=False),
    sa.Column('consumer_id', sa.String(length=40), nullable=False),
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('partner_id', sa.String(length=40), nullable=False),
    sa.Column('api_id', sa.String(length=40), nullable=False),
    sa.Column('plan_version_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('usage_units', sa.BigInteger(), nullable=False),
    sa.Column('usage_amount', sa.BigInteger(), nullable=False),
    sa.Column('terms', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('platform_fee_percent', sa.Integer(), nullable=False),
    sa.Column('platform_fee_amount', sa.BigInteger(), nullable=False),
    sa.Column('partner_amount', sa.BigInteger(), nullable=False),
    sa.Column('amount_refunded', sa.BigInteger(), nullable=False),
    sa.Column('amount_disputed', sa.BigInteger(), nullable=False),
    sa.Column('attempt_count', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('stripe_payment_intent_id', sa.String(length=64), nullable=True),
    sa.Column('stripe_charge_id', sa.String(length=64), nullable=True),
    sa.Column('receipt_url', sa.Text(), nullable=True),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['api_id'], ['apis.id'], name=op.f('fk_invoices_api_id_apis'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['consumer_id'], ['users.id'], name=op.f('fk_invoices_consumer_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_invoices_partner_id_partners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plan_version_id'], ['plan_versions.id'], name=op.f('fk_invoices_plan_version_id_plan_versions')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_invoices_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('subscription_id', 'period_start', name=op.f('uq_invoices_subscription_id'))
    )
    op.create_index('ix_invoices_consumer_id_id', 'invoices', ['consumer_id', 'id'], unique=False)
    op.create_index('ix_invoices_partner_paid', 'invoices', ['partner_id', 'paid_at'], unique=False)
    op.create_index('ix_invoices_status_retry', 'invoices', ['status', 'next_attempt_at'], unique=False)
    op.create_index(op.f('ix_invoices_stripe_charge_id'), 'invoices', ['stripe_charge_id'], unique=False)
    op.create_index(op.f('ix_invoices_stripe_payment_intent_id'), 'invoices', ['stripe_payment_intent_id'], unique=False)
    op.create_table('billing_payment_attempts',
    sa.Column('invoice_id', sa.String(length=40), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_billing_payment_attempts_invoice_id_invoices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_payment_attempts'))
    )
    op.create_index(op.f('ix_billing_payment_attempts_invoice_id'), 'billing_payment_attempts', ['invoice_id'], unique=False)
    op.create_table('invoice_lines',
    sa.Column('invoice_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('endpoint_id', sa.String(length=40), nullable=True),
    sa.Column('method', sa.String(length=8), nullable=True),
    sa.Column('path', sa.String(length=512), nullable=True),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_lines_invoice_id_invoices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_lines'))
    )
    op.create_index(op.f('ix_invoice_lines_invoice_id'), 'invoice_lines', ['invoice_id'], unique=False)
    for statement in LEDGER_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries")
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update ON ledger_entries")
    op.execute("DROP FUNCTION IF EXISTS ledger_transaction_balanced()")
    op.execute("DROP FUNCTION IF EXISTS ledger_entries_immutable()")
    op.drop_index(op.f('ix_invoice_lines_invoice_id'), table_name='invoice_lines')
    op.drop_table('invoice_lines')
    op.drop_index(op.f('ix_billing_payment_attempts_invoice_id'), table_name='billing_payment_attempts')
    op.drop_table('billing_payment_attempts')
    op.drop_index(op.f('ix_invoices_stripe_payment_intent_id'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_stripe_charge_id'), table_name='invoices')
    op.drop_index('ix_invoices_status_retry', table_name='invoices')
    op.drop_index('ix_invoices_partner_paid', table_name='invoices')
    op.drop_index('ix_invoices_consumer_id_id', table_name='invoices')
    op.drop_table('invoices')
    op.drop_index('ix_billing_plan_changes_sub_at', table_name='billing_plan_changes')
    op.drop_table('billing_plan_changes')
    op.drop_index(op.f('ix_billing_budgets_consumer_id'), table_name='billing_budgets')
    op.drop_table('billing_budgets')
    op.drop_index(op.f('ix_ledger_entries_transaction_id'), table_name='ledger_entries')
    op.drop_index('ix_ledger_entries_account_created', table_name='ledger_entries')
    op.drop_table('ledger_entries')
    op.drop_table('billing_customers')
    op.drop_index('ix_stripe_events_unprocessed', table_name='stripe_events', postgresql_where='processed_at IS NULL')
    op.drop_table('stripe_events')
    op.drop_index(op.f('ix_ledger_transactions_invoice_id'), table_name='ledger_transactions')
    op.drop_table('ledger_transactions')
    op.drop_table('ledger_accounts')
    op.execute("DROP SEQUENCE IF EXISTS invoice_number_seq")
