"""OAuth clients, grants, codes, tokens, signing keys

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=10), nullable=False),
    sa.Column('public_jwk', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('private_key_encrypted', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_oauth_signing_keys'))
    )
    op.create_table('oauth_apps',
    sa.Column('owner_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('redirect_uris', postgresql.ARRAY(sa.String(length=2048)), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('grant_types', postgresql.ARRAY(sa.String(length=40)), nullable=False),
    sa.Column('secret_prefix', sa.String(length=32), nullable=True),
    sa.Column('secret_hash', sa.String(length=64), nullable=True),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_oauth_apps_owner_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_apps'))
    )
    op.create_index(op.f('ix_oauth_apps_owner_id'), 'oauth_apps', ['owner_id'], unique=False)
    op.create_table('oauth_grants',
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('app_id', sa.String(length=40), nullable=False),
    sa.Column('scopes', postgresql.ARRAY(sa.String(length=100)), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['oauth_apps.id'], name=op.f('fk_oauth_grants_app_id_oauth_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_grants_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_grants'))
    )
    op.create_index(op.f('ix_oauth_grants_app_id'), 'oauth_grants', ['app_id'], unique=False)
    op.create_index(op.f('ix_oauth_grants_user_id'), 'oauth_grants', ['user_id'], unique=False)
    op.create_index('uq_oauth_grants_live', 'oauth_grants', ['user_id', 'app_id'], unique=True, postgresql_where=sa.text('revoked_at IS NULL'))
    op.create_table('oauth_access_tokens',
    sa.Column('jti', sa.String(length=40), nullable=False),
    sa.Column('app_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('grant_id', sa.String(length=40), nullable=True),
    sa.Column('family_id', sa.String(length=40), nullable=True),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['oauth_apps.id'], name=op.f('fk_oauth_access_tokens_app_id_oauth_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_access_tokens_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_access_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_oauth_access_tokens'))
    )
    op.create_index(op.f('ix_oauth_access_tokens_app_id'), 'oauth_access_tokens', ['app_id'], unique=False)
    op.create_index(op.f('ix_oauth_access_tokens_expires_at'), 'oauth_access_tokens', ['expires_at'], unique=False)
    op.create_index(op.f('ix_oauth_access_tokens_family_id'), 'oauth_access_tokens', ['family_id'], unique=False)
    op.create_index(op.f('ix_oauth_access_tokens_grant_id'), 'oauth_access_tokens', ['grant_id'], unique=False)
    op.create_index(op.f('ix_oauth_access_tokens_user_id'), 'oauth_access_tokens', ['user_id'], unique=False)
    op.create_table('oauth_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('app_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('grant_id', sa.String(length=40), nullable=True),
    sa.Column('redirect_uri', sa.String(length=2048), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=10), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('family_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['oauth_apps.id'], name=op.f('fk_oauth_codes_app_id_oauth_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_codes_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_oauth_codes_code_hash'))
    )
    op.create_index(op.f('ix_oauth_codes_app_id'), 'oauth_codes', ['app_id'], unique=False)
    op.create_table('oauth_refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=32), nullable=False),
    sa.Column('app_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('grant_id', sa.String(length=40), nullable=True),
    sa.Column('family_id', sa.String(length=40), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['oauth_apps.id'], name=op.f('fk_oauth_refresh_tokens_app_id_oauth_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_refresh_tokens_grant_id_oauth_grants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_refresh_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_oauth_refresh_tokens_token_hash'))
    )
    op.create_index(op.f('ix_oauth_refresh_tokens_app_id'), 'oauth_refresh_tokens', ['app_id'], unique=False)
    op.create_index(op.f('ix_oauth_refresh_tokens_family_id'), 'oauth_refresh_tokens', ['family_id'], unique=False)
    op.create_index(op.f('ix_oauth_refresh_tokens_grant_id'), 'oauth_refresh_tokens', ['grant_id'], unique=False)
    op.create_index(op.f('ix_oauth_refresh_tokens_user_id'), 'oauth_refresh_tokens', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_oauth_refresh_tokens_user_id'), table_name='oauth_refresh_tokens')
    op.drop_index(op.f('ix_oauth_refresh_tokens_grant_id'), table_name='oauth_refresh_tokens')
    op.drop_index(op.f('ix_oauth_refresh_tokens_family_id'), table_name='oauth_refresh_tokens')
    op.drop_index(op.f('ix_oauth_refresh_tokens_app_id'), table_name='oauth_refresh_tokens')
    op.drop_table('oauth_refresh_tokens')
    op.drop_index(op.f('ix_oauth_codes_app_id'), table_name='oauth_codes')
    op.drop_table('oauth_codes')
    op.drop_index(op.f('ix_oauth_access_tokens_user_id'), table_name='oauth_access_tokens')
    op.drop_index(op.f('ix_oauth_access_tokens_grant_id'), table_name='oauth_access_tokens')
    op.drop_index(op.f('ix_oauth_access_tokens_family_id'), table_name='oauth_access_tokens')
    op.drop_index(op.f('ix_oauth_access_tokens_expires_at'), table_name='oauth_access_tokens')
    op.drop_index(op.f('ix_oauth_access_tokens_app_id'), table_name='oauth_access_tokens')
    op.drop_table('oauth_access_tokens')
    op.drop_index('uq_oauth_grants_live', table_name='oauth_grants', postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_index(op.f('ix_oauth_grants_user_id'), table_name='oauth_grants')
    op.drop_index(op.f('ix_oauth_grants_app_id'), table_name='oauth_grants')
    op.drop_table('oauth_grants')
    op.drop_index(op.f('ix_oauth_apps_owner_id'), table_name='oauth_apps')
    op.drop_table('oauth_apps')
    op.drop_table('oauth_signing_keys')
