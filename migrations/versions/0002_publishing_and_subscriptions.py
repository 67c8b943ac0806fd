"""publishing and subscriptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 21:08:27.289824
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('apis',
    sa.Column('partner_id', sa.String(length=40), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('upstream_url', sa.String(length=2048), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=64)), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('proxy_secret_encrypted', sa.Text(), nullable=False),
    sa.Column('platform_fee_percent', sa.Integer(), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('search', postgresql.TSVECTOR(), sa.Computed("setweight(to_tsvector('english', coalesce(name, '')), 'A') || setweight(to_tsvector('english', coalesce(category, '')), 'B') || setweight(to_tsvector('english', coalesce(description, '')), 'C')", persisted=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_apis_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apis')),
    sa.UniqueConstraint('slug', name=op.f('uq_apis_slug'))
    )
    op.create_index(op.f('ix_apis_category'), 'apis', ['category'], unique=False)
    op.create_index(op.f('ix_apis_partner_id'), 'apis', ['partner_id'], unique=False)
    op.create_index('ix_apis_search', 'apis', ['search'], unique=False, postgresql_using='gin')
    op.create_index('ix_apis_status_id', 'apis', ['status', 'id'], unique=False)
    op.create_index('ix_apis_tags', 'apis', ['tags'], unique=False, postgresql_using='gin')
    op.create_table('api_endpoints',
    sa.Column('api_id', sa.String(length=40), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('scope', sa.String(length=100), nullable=True),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['api_id'], ['apis.id'], name=op.f('fk_api_endpoints_api_id_apis'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_endpoints')),
    sa.UniqueConstraint('api_id', 'method', 'path', name=op.f('uq_api_endpoints_api_id'))
    )
    op.create_index(op.f('ix_api_endpoints_api_id'), 'api_endpoints', ['api_id'], unique=False)
    op.create_table('api_scopes',
    sa.Column('api_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['api_id'], ['apis.id'], name=op.f('fk_api_scopes_api_id_apis'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_scopes')),
    sa.UniqueConstraint('api_id', 'name', name=op.f('uq_api_scopes_api_id'))
    )
    op.create_index(op.f('ix_api_scopes_api_id'), 'api_scopes', ['api_id'], unique=False)
    op.create_table('plans',
    sa.Column('api_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['api_id'], ['apis.id'], name=op.f('fk_plans_api_id_apis'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plans'))
    )
    op.create_index(op.f('ix_plans_api_id'), 'plans', ['api_id'], unique=False)
    op.create_table('plan_versions',
    sa.Column('plan_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('monthly_fee', sa.BigInteger(), nullable=False),
    sa.Column('included_units', sa.BigInteger(), nullable=False),
    sa.Column('unit_pricing', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('quota_limit', sa.BigInteger(), nullable=True),
    sa.Column('quota_hard', sa.Boolean(), nullable=False),
    sa.Column('rate_per_second', sa.Integer(), nullable=True),
    sa.Column('rate_per_minute', sa.Integer(), nullable=True),
    sa.Column('scopes', postgresql.ARRAY(sa.String(length=100)), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_plan_versions_plan_id_plans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_versions')),
    sa.UniqueConstraint('plan_id', 'version', name=op.f('uq_plan_versions_plan_id'))
    )
    op.create_index(op.f('ix_plan_versions_plan_id'), 'plan_versions', ['plan_id'], unique=False)
    op.create_table('subscriptions',
    sa.Column('consumer_id', sa.String(length=40), nullable=False),
    sa.Column('api_id', sa.String(length=40), nullable=False),
    sa.Column('partner_id', sa.String(length=40), nullable=False),
    sa.Column('plan_id', sa.String(length=40), nullable=False),
    sa.Column('plan_version_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('current_period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('canceled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('past_due_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['api_id'], ['apis.id'], name=op.f('fk_subscriptions_api_id_apis'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['consumer_id'], ['users.id'], name=op.f('fk_subscriptions_consumer_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_subscriptions_partner_id_partners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_subscriptions_plan_id_plans')),
    sa.ForeignKeyConstraint(['plan_version_id'], ['plan_versions.id'], name=op.f('fk_subscriptions_plan_version_id_plan_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    op.create_index(op.f('ix_subscriptions_api_id'), 'subscriptions', ['api_id'], unique=False)
    op.create_index(op.f('ix_subscriptions_consumer_id'), 'subscriptions', ['consumer_id'], unique=False)
    op.create_index(op.f('ix_subscriptions_partner_id'), 'subscriptions', ['partner_id'], unique=False)
    op.create_index('ix_subscriptions_period_end', 'subscriptions', ['current_period_end'], unique=False)
    op.create_index(op.f('ix_subscriptions_plan_id'), 'subscriptions', ['plan_id'], unique=False)
    op.create_index('uq_subscriptions_live', 'subscriptions', ['consumer_id', 'api_id'], unique=True, postgresql_where=sa.text("status <> 'canceled'"))
    op.create_table('api_keys',
    sa.Column('consumer_id', sa.String(length=40), nullable=False),
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['consumer_id'], ['users.id'], name=op.f('fk_api_keys_consumer_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_api_keys_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_index(op.f('ix_api_keys_consumer_id'), 'api_keys', ['consumer_id'], unique=False)
    op.create_index(op.f('ix_api_keys_prefix'), 'api_keys', ['prefix'], unique=False)
    op.create_index(op.f('ix_api_keys_subscription_id'), 'api_keys', ['subscription_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_api_keys_subscription_id'), table_name='api_keys')
    op.drop_index(op.f('ix_api_keys_prefix'), table_name='api_keys')
    op.drop_index(op.f('ix_api_keys_consumer_id'), table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_index('uq_subscriptions_live', table_name='subscriptions', postgresql_where=sa.text("status <> 'canceled'"))
    op.drop_index(op.f('ix_subscriptions_plan_id'), table_name='subscriptions')
    op.drop_index('ix_subscriptions_period_end', table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_partner_id'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_consumer_id'), table_name='subscriptions')
    op.drop_index(op.f('ix_subscriptions_api_id'), table_name='subscriptions')
    op.drop_table('subscriptions')
    op.drop_index(op.f('ix_plan_versions_plan_id'), table_name='plan_versions')
    op.drop_table('plan_versions')
    op.drop_index(op.f('ix_plans_api_id'), table_name='plans')
    op.drop_table('plans')
    op.drop_index(op.f('ix_api_scopes_api_id'), table_name='api_scopes')
    op.drop_table('api_scopes')
    op.drop_index(op.f('ix_api_endpoints_api_id'), table_name='api_endpoints')
    op.drop_table('api_endpoints')
    op.drop_index('ix_apis_tags', table_name='apis', postgresql_using='gin')
    op.drop_index('ix_apis_status_id', table_name='apis')
    op.drop_index('ix_apis_search', table_name='apis', postgresql_using='gin')
    op.drop_index(op.f('ix_apis_partner_id'), table_name='apis')
    op.drop_index(op.f('ix_apis_category'), table_name='apis')
    op.drop_table('apis')
