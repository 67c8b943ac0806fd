"""OAuth 2.0 storage: apps (clients), remembered grants, codes, refresh/access tokens, signing keys.

Secrets (client secrets, codes, refresh tokens) are stored only as SHA-256 hashes; access tokens
are JWTs, of which we keep the `jti` row (for introspection and revocation); signing keys keep
their private half encrypted with `core.security.encrypt`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base, IdMixin, TimestampMixin, utcnow

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


class OAuthApp(IdMixin, TimestampMixin, Base):
    """An OAuth client owned by a consumer. Its id (`app_…`) is the `client_id`."""

    __tablename__ = "oauth_apps"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(String(2048)), default=list)
    public: Mapped[bool] = mapped_column(default=False)
    grant_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    secret_prefix: Mapped[str | None] = mapped_column(String(32), default=None)
    secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class OAuthGrant(IdMixin, TimestampMixin, Base):
    """A user's remembered consent for an app: the scopes they allowed (`grt_…`)."""

    __tablename__ = "oauth_grants"
    __table_args__ = (
        Index("uq_oauth_grants_live", "user_id", "app_id", unique=True, postgresql_where=text("revoked_at IS NULL")),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthCode(IdMixin, Base):
    """An authorization code (hashed). Kept after use (`used_at`) so a replay can be detected and the
    tokens issued from it revoked (RFC 6749 §4.1.2)."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("oauth_grants.id", ondelete="CASCADE"), default=None)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), default=None)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    family_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthRefreshToken(IdMixin, Base):
    """An opaque refresh token (hashed). Rotated on every use; all tokens issued from one code share a
    `family_id`, so a reused (already rotated) token revokes the whole family."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("oauth_grants.id", ondelete="CASCADE"), default=None,
                                                 index=True)
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    scope: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthAccessToken(Base):
    """The record of an issued JWT access token, by `jti`: introspection reads it, revocation marks it
    (and puts the jti on the gateway's Redis deny-list)."""

    __tablename__ = "oauth_access_tokens"

    jti: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("oauth_grants.id", ondelete="CASCADE"), default=None,
                                                 index=True)
    family_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    scope: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SigningKey(Base):
    """A JWT signing key. `retired_at` set: no longer signs, still published at the jwks_uri until
    every token it signed has expired (`expires_at`), then deleted."""

    __tablename__ = "oauth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    private_key_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
