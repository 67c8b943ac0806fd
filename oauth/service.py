"""OAuth business rules that need no authlib: apps (clients), remembered grants, which scopes a
consumer may grant, revocation of token families, and the Redis deny-list.

Scope policy: a token carries only scopes that the consumer's live subscriptions grant (the
plan version's `scopes`). Asking for more is refused with `invalid_scope` (authorization request,
client credentials, code exchange); a refresh is narrowed to the scopes still granted, since the
client asked for nothing new, and refused with `invalid_scope` only when none is left.

Access-token verification for the gateway (DB-free) lives in `oauth.tokens`
(`verify_access_token`, `deny_list_key`); it is re-exported here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from sqlalchemy import Select, Update, any_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts.models import Token, User
from marketplace.core.db import utcnow
from marketplace.core.errors import Conflict, NotFound, Unprocessable
from marketplace.core.ids import new_id
from marketplace.core.security import hash_token, new_token
from marketplace.subscriptions.models import LIVE_STATUSES, Subscription
from oauth.models import GRANT_TYPES, OAuthAccessToken, OAuthApp, OAuthGrant, OAuthRefreshToken
from oauth.tokens import LEEWAY, AccessClaims, TokenError, deny_list_key, verify_access_token
from partners.publishing.models import Api, PlanVersion, Scope

CLIENT_SECRET_KIND = "mcs"  # client secrets look like mcs_…
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}

__all__ = ["AccessClaims", "TokenError", "deny_list_key", "verify_access_token"]


# --- apps -------------------------------------------------------------------------------------

def validate_redirect_uri(uri: str) -> str | None:
    """None if acceptable, else what is wrong. Exact-match URIs: https, or http on loopback only."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "is not a URL"
    if parts.fragment or "#" in uri:
        return "must not contain a fragment"
    host = (parts.hostname or "").lower()
    if not host:
        return "must be an absolute URL with a host"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http":
        loopback = host in LOOPBACK_HOSTS
        if not loopback:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
        return None if loopback else "must use https (http is allowed only for localhost and 127.0.0.1)"
    return "must use https"


def _check_app_input(redirect_uris: list[str], public: bool, grant_types: list[str] | None) -> list[str]:
    errors = []
    for index, uri in enumerate(redirect_uris):
        problem = validate_redirect_uri(uri)
        if problem:
            errors.append({"field": f"redirect_uris[{index}]", "message": f"{uri!r} {problem}."})
    types = list(dict.fromkeys(grant_types or (["authorization_code", "refresh_token"] if public else list(GRANT_TYPES))))
    for grant_type in types:
        if grant_type not in GRANT_TYPES:
            errors.append({"field": "grant_types", "message": f"{grant_type!r} is not one of {', '.join(GRANT_TYPES)}."})
    if public and "client_credentials" in types:
        errors.append({"field": "grant_types", "message": "Public apps cannot use client_credentials (they hold no secret)."})
    if "authorization_code" in types and not redirect_uris:
        errors.append({"field": "redirect_uris", "message": "The authorization_code grant needs at least one redirect URI."})
    if errors:
        raise Unprocessable("Fix these fields and send the request again: "
                            + "; ".join(e["message"] for e in errors), errors=errors)
    return types


async def create_app(session: AsyncSession, owner_id: str, *, name: str, redirect_uris: list[str], public: bool,
                     grant_types: list[str] | None) -> tuple[OAuthApp, str | None]:
    types = _check_app_input(redirect_uris, public, grant_types)
    app = OAuthApp(id=new_id("app"), owner_id=owner_id, name=name.strip(), redirect_uris=list(dict.fromkeys(redirect_uris)),
                   public=public, grant_types=types)
    secret = None
    if not public:
        token = new_token(CLIENT_SECRET_KIND)
        app.secret_prefix, app.secret_hash, secret = token.prefix, token.hash, token.value
    session.add(app)
    await session.flush()
    return app, secret


_CLIENT_ID = re.compile(r"^app_[0-9a-z]{26}$")
_GRANT_ID = re.compile(r"^grt_[0-9a-z]{26}$")


def is_client_id(value: object) -> bool:
    """Well-formed `app_…` id: anything else is refused before it reaches the database."""
    return isinstance(value, str) and bool(_CLIENT_ID.match(value))


def apps_of(owner_id: str) -> Select[Any]:
    return select(OAuthApp).where(OAuthApp.owner_id == owner_id)


async def get_app(session: AsyncSession, owner_id: str, app_id: str) -> OAuthApp:
    app = await session.scalar(apps_of(owner_id).where(OAuthApp.id == app_id)) if is_client_id(app_id) else None
    if app is None:
        raise NotFound(f"No app {app_id!r}. List yours with GET /v1/apps.")
    return app


async def rotate_secret(session: AsyncSession, owner_id: str, app_id: str) -> tuple[OAuthApp, str]:
    app = await get_app(session, owner_id, app_id)
    if app.public:
        raise Conflict("Public apps have no client secret; they authenticate with PKCE.")
    token = new_token(CLIENT_SECRET_KIND)
    app.secret_prefix, app.secret_hash = token.prefix, token.hash
    app.updated_at = utcnow()
    await session.flush()
    return app, token.value


async def delete_app(session: AsyncSession, redis: Redis, owner_id: str, app_id: str) -> None:
    app = await get_app(session, owner_id, app_id)
    await revoke_access_tokens(session, redis, OAuthAccessToken.app_id == app.id)
    await session.delete(app)
    await session.flush()


# --- scopes a consumer may grant --------------------------------------------------------------

def live_scopes_query(user_id: str) -> Select[Any]:
    return (select(PlanVersion.scopes).join(Subscription, Subscription.plan_version_id == PlanVersion.id)
            .where(Subscription.consumer_id == user_id, Subscription.status.in_(LIVE_STATUSES)))


async def live_scopes(session: AsyncSession, user_id: str) -> set[str]:
    return {scope for scopes in (await session.scalars(live_scopes_query(user_id))).all() for scope in scopes or ()}


@dataclass(frozen=True)
class ScopeInfo:
    name: str
    description: str
    api_name: str


async def describe_scopes(session: AsyncSession, user_id: str, names: list[str]) -> list[ScopeInfo]:
    """Each requested scope with its partner's description and the API(s) it belongs to."""
    rows = (await session.execute(
        select(Scope.name, Scope.description, Api.name)
        .join(Api, Api.id == Scope.api_id)
        .join(Subscription, Subscription.api_id == Api.id)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .where(Subscription.consumer_id == user_id, Subscription.status.in_(LIVE_STATUSES),
               Scope.name.in_(names), Scope.name == any_(PlanVersion.scopes))
        .order_by(Api.name)
    )).all()
    found: dict[str, list[ScopeInfo]] = {}
    for name, description, api_name in rows:
        found.setdefault(name, []).append(ScopeInfo(name, description, api_name))
    return [info for name in names for info in found.get(name, [ScopeInfo(name, "", "")])]


# --- browser session (the /login cookie) -------------------------------------------------------

@dataclass(frozen=True)
class SessionUser:
    id: str
    email: str
    name: str


async def session_user(session: AsyncSession, raw: str | None) -> SessionUser | None:
    """The user behind the platform's session cookie. Reads the accounts tables directly (models
    only), since oauth sits below the accounts domain in the import order."""
    if not raw:
        return None
    row = (await session.execute(
        select(User.id, User.email, User.name).join(Token, Token.user_id == User.id)
        .where(Token.token_hash == hash_token(raw), Token.kind == "session", Token.revoked_at.is_(None),
               Token.expires_at > utcnow())
    )).first()
    return SessionUser(*row) if row else None


# --- grants and revocation --------------------------------------------------------------------

async def live_grant(session: AsyncSession, user_id: str, app_id: str) -> OAuthGrant | None:
    return await session.scalar(select(OAuthGrant).where(OAuthGrant.user_id == user_id, OAuthGrant.app_id == app_id,
                                                         OAuthGrant.revoked_at.is_(None)))


def grants_of(user_id: str) -> Select[Any]:
    return select(OAuthGrant).where(OAuthGrant.user_id == user_id, OAuthGrant.revoked_at.is_(None))


async def app_names(session: AsyncSession, app_ids: set[str]) -> dict[str, str]:
    if not app_ids:
        return {}
    return dict((await session.execute(select(OAuthApp.id, OAuthApp.name).where(OAuthApp.id.in_(app_ids)))).all())


async def revoke_grant(session: AsyncSession, redis: Redis, user_id: str, grant_id: str) -> None:
    grant = await session.scalar(select(OAuthGrant).where(OAuthGrant.id == grant_id, OAuthGrant.user_id == user_id,
                                                          OAuthGrant.revoked_at.is_(None))) if _GRANT_ID.match(grant_id) else None
    if grant is None:
        raise NotFound(f"No grant {grant_id!r}. List yours with GET /v1/oauth/grants.")
    now = utcnow()
    grant.revoked_at = now
    await session.execute(revoke_refresh_tokens_stmt(OAuthRefreshToken.grant_id == grant.id, now))
    await revoke_access_tokens(session, redis, OAuthAccessToken.grant_id == grant.id)


def revoke_refresh_tokens_stmt(where: Any, now: datetime) -> Update:
    return update(OAuthRefreshToken).where(where, OAuthRefreshToken.revoked_at.is_(None)).values(revoked_at=now)


def revoke_access_tokens_stmt(where: Any, now: datetime) -> Any:
    return (update(OAuthAccessToken)
            .where(where, OAuthAccessToken.revoked_at.is_(None), OAuthAccessToken.expires_at > now)
            .values(revoked_at=now).returning(OAuthAccessToken.jti, OAuthAccessToken.expires_at))


def deny_entries(rows: Any, now: datetime) -> list[tuple[str, int]]:
    """(jti, ttl): kept until the token would be refused anyway (its expiry plus the verifier's leeway)."""
    return [(jti, max(1, int((expires_at - now).total_seconds()) + LEEWAY + 1)) for jti, expires_at in rows]


async def revoke_access_tokens(session: AsyncSession, redis: Redis, where: Any) -> int:
    now = utcnow()
    entries = deny_entries((await session.execute(revoke_access_tokens_stmt(where, now))).all(), now)
    await push_deny_list(redis, entries)
    return len(entries)


async def push_deny_list(redis: Redis, entries: list[tuple[str, int]]) -> None:
    """Put revoked access tokens' jtis on the gateway's deny-list, each until its token expires."""
    if not entries:
        return
    pipe = redis.pipeline(transaction=False)
    for jti, ttl in entries:
        pipe.set(deny_list_key(jti), b"1", ex=ttl)
    await pipe.execute()
