"""What authlib calls while it handles a request: the client/code/token objects it expects, the
storage hooks (sync, on the request's session via `oauth.context`), the JWT token generator,
the grants (code + PKCE S256, rotating refresh tokens with reuse detection, client credentials)
and the revocation and introspection endpoints."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from sqlalchemy import select

from marketplace.core.db import utcnow
from marketplace.core.ids import new_id
from marketplace.core.security import constant_time_equals, hash_token, new_token
from marketplace.settings import get_settings
from oauth import keys, service
from oauth.context import ctx, db, internal_id
from oauth.models import OAuthAccessToken, OAuthApp, OAuthCode, OAuthGrant, OAuthRefreshToken, SigningKey
from oauth.tokens import KeyRing, TokenError, UnknownKey, sign_access_token, verify_access_token

REFRESH_TOKEN_KIND = "mrt"  # refresh tokens look like mrt_…
CODE_TTL = timedelta(minutes=5)
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,100}$")  # RFC 6749 §3.3 scope-token
MAX_SCOPES = 50


# --- models as authlib sees them ----------------------------------------------------------------

@dataclass(frozen=True)
class OAuthUser:
    id: str

    def get_user_id(self) -> str:
        return self.id


class Client(ClientMixin):
    def __init__(self, app: OAuthApp) -> None:
        self.app = app
        self.client_id = app.id
        self.public = app.public

    def get_client_id(self) -> str:
        return self.app.id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.app.redirect_uris or []
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        # Which scopes the *consumer* may grant is decided per user (subscriptions); here: any
        # well-formed, non-empty request. None makes authlib answer invalid_scope.
        return scope if scope and scope.strip() else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in (self.app.redirect_uris or [])  # exact match

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.app.secret_hash) and constant_time_equals(hash_token(client_secret), self.app.secret_hash or "")

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.app.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.app.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.app.public:
            return False
        return grant_type in self.app.grant_types


class Code(AuthorizationCodeMixin):
    def __init__(self, row: OAuthCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str | None:
        return self.row.redirect_uri or None  # RFC 6749 §4.1.3: required at the token endpoint only if sent

    def get_scope(self) -> str:
        return self.row.scope


class RefreshToken:
    def __init__(self, row: OAuthRefreshToken) -> None:
        self.row = row

    def check_client(self, client: Client) -> bool:
        return self.row.app_id == client.app.id

    def get_scope(self) -> str:
        return self.row.scope


@dataclass
class TokenRecord:
    """An access or refresh token found by revocation/introspection."""

    kind: str  # access_token | refresh_token
    app_id: str
    user_id: str
    scope: str
    expires_at: datetime
    revoked: bool
    jti: str | None = None
    family_id: str | None = None
    iat: int | None = None

    def check_client(self, client: Client) -> bool:
        return self.app_id == client.app.id

    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked


# --- storage helpers (sync, inside run) -----------------------------------------------------------

def query_app(client_id: Any) -> Client | None:
    if not service.is_client_id(client_id):
        return None
    app = db().get(OAuthApp, client_id)
    return Client(app) if app else None


def live_scopes(user_id: str) -> set[str]:
    return {scope for scopes in db().scalars(service.live_scopes_query(user_id)).all() for scope in scopes or ()}


def revoke_family(family_id: str) -> None:
    session, now = db(), utcnow()
    session.execute(service.revoke_refresh_tokens_stmt(OAuthRefreshToken.family_id == family_id, now))
    rows = session.execute(service.revoke_access_tokens_stmt(OAuthAccessToken.family_id == family_id, now)).all()
    ctx().deny.extend(service.deny_entries(rows, now))


def check_scope_syntax(scope: str | None) -> list[str]:
    scopes = scope_to_list(scope) or []
    if not scopes:
        raise InvalidScopeError("Request at least one scope, e.g. scope=weather:read.")
    if len(scopes) > MAX_SCOPES or not all(SCOPE_TOKEN.match(s) for s in scopes):
        raise InvalidScopeError("The scope parameter is malformed.")
    return list(dict.fromkeys(scopes))


def lookup_token(token_string: str, hint: str | None) -> TokenRecord | None:
    if not isinstance(token_string, str) or len(token_string) > 4096:
        return None
    session = db()
    if token_string.startswith(REFRESH_TOKEN_KIND + "_"):
        row = session.scalar(select(OAuthRefreshToken).where(OAuthRefreshToken.token_hash == hash_token(token_string)))
        if row is None:
            return None
        return TokenRecord("refresh_token", row.app_id, row.user_id, row.scope, row.expires_at,
                           revoked=row.revoked_at is not None or row.rotated_at is not None, family_id=row.family_id,
                           iat=int(row.created_at.timestamp()))
    try:
        claims = verify_access_token(token_string)
    except UnknownKey:
        ring = KeyRing()  # a key this process has not loaded yet: read the set from the database
        ring.load({"keys": [k.public_jwk for k in session.scalars(select(SigningKey)).all()]})
        try:
            claims = verify_access_token(token_string, ring=ring)
        except TokenError:
            return None
    except TokenError:
        return None
    access = session.get(OAuthAccessToken, claims.jti)
    if access is None:
        return None
    return TokenRecord("access_token", access.app_id, access.user_id, access.scope, access.expires_at,
                       revoked=access.revoked_at is not None, jti=access.jti, family_id=access.family_id,
                       iat=claims.iat)


# --- token generation ---------------------------------------------------------------------------

class TokenGenerator:
    """RFC 9068 JWT access tokens + opaque rotating refresh tokens, limited to subscribed scopes."""

    def __call__(self, grant_type: str, client: Client, user: OAuthUser | None = None, scope: str | None = None,
                 expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        settings = get_settings()
        subject = user.id if user else client.app.owner_id  # client_credentials: the app's owner
        requested = check_scope_syntax(scope)
        allowed = live_scopes(subject)
        if grant_type == "refresh_token":
            scopes = [s for s in requested if s in allowed]
            if not scopes:
                raise InvalidScopeError("None of this token's scopes is granted by a live subscription any more. "
                                        "Subscribe again and re-authorize the app.")
        else:
            missing = [s for s in requested if s not in allowed]
            if missing:
                raise InvalidScopeError(f"No live subscription grants {' '.join(missing)}. Subscribe to a plan "
                                        "that includes these scopes, or request fewer.")
            scopes = requested
        ttl = settings.oauth_access_token_ttl
        now = int(time.time())
        jti = internal_id("at")
        claims = {"iss": settings.oauth_issuer, "sub": subject, "aud": settings.oauth_token_audience,
                  "client_id": client.app.id, "scope": " ".join(scopes), "jti": jti, "iat": now, "nbf": now,
                  "exp": now + ttl}
        kid, private_key = keys.active_private_key(db())
        token: dict[str, Any] = {"token_type": "Bearer", "access_token": sign_access_token(claims, private_key, kid),
                                 "expires_in": ttl, "scope": claims["scope"]}
        issued = ctx().issued
        issued.clear()
        issued.update(jti=jti, sub=subject, scope=claims["scope"], expires_at=datetime.fromtimestamp(now + ttl, tz=utcnow().tzinfo))
        if include_refresh_token:
            refresh = new_token(REFRESH_TOKEN_KIND)
            token["refresh_token"] = refresh.value
            issued["refresh"] = refresh
        return token


# --- grants ---------------------------------------------------------------------------------------

class S256Only(CodeChallenge):
    """PKCE (RFC 7636) with S256 only: `plain` is refused, and public clients must use it."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if grant.request.client.public and not challenge:
            raise InvalidRequestError("Public clients must use PKCE: send code_challenge and code_challenge_method=S256.")
        if (challenge or method) and method != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported; 'plain' is refused.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        db().add(OAuthCode(
            id=internal_id("code"), code_hash=hash_token(code), app_id=request.client.app.id, user_id=request.user.id,
            grant_id=ctx().grant_id, redirect_uri=data.get("redirect_uri") or "",  # "": not sent, not required later
            scope=" ".join(check_scope_syntax(request.scope)), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method") if data.get("code_challenge") else None,
            expires_at=utcnow() + CODE_TTL,
        ))
        db().flush()

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        row = db().scalar(select(OAuthCode).where(OAuthCode.code_hash == hash_token(code)).with_for_update())
        if row is None or row.app_id != client.app.id:
            return None
        if row.used_at is not None:
            # A replayed code: refuse, and revoke what was issued from it (RFC 6749 §4.1.2).
            if row.family_id:
                revoke_family(row.family_id)
            return None
        if row.expires_at <= utcnow():
            return None
        return Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        authorization_code.row.used_at = utcnow()  # kept, so a replay is recognised
        db().flush()

    def authenticate_user(self, authorization_code: Code) -> OAuthUser | None:
        row = authorization_code.row
        if row.grant_id:
            grant = db().get(OAuthGrant, row.grant_id)
            if grant is None or grant.revoked_at is not None:
                return None
        return OAuthUser(row.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        if not isinstance(refresh_token, str) or not refresh_token.startswith(REFRESH_TOKEN_KIND + "_"):
            return None
        row = db().scalar(select(OAuthRefreshToken).where(OAuthRefreshToken.token_hash == hash_token(refresh_token))
                          .with_for_update())
        if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
            return None
        if row.rotated_at is not None:
            # Reuse of a rotated token: someone holds a copy. Revoke the whole family.
            revoke_family(row.family_id)
            return None
        if row.grant_id:
            # The consent behind it decides too: a token rotated while the grant was being revoked
            # can escape the revocation's UPDATE (it was not visible to it).
            grant = db().get(OAuthGrant, row.grant_id)
            if grant is None or grant.revoked_at is not None:
                revoke_family(row.family_id)
                return None
        return RefreshToken(row)

    def authenticate_user(self, refresh_token: RefreshToken) -> OAuthUser:
        return OAuthUser(refresh_token.row.user_id)

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        refresh_token.row.rotated_at = utcnow()
        db().flush()


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


# --- revocation and introspection -------------------------------------------------------------------

class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return lookup_token(token_string, token_type_hint)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        now = utcnow()
        if token.kind == "refresh_token":
            # RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens of its grant.
            if token.family_id:
                revoke_family(token.family_id)
            return
        rows = db().execute(service.revoke_access_tokens_stmt(OAuthAccessToken.jti == token.jti, now)).all()
        ctx().deny.extend(service.deny_entries(rows, now))


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return lookup_token(token_string, token_type_hint)

    def check_permission(self, token: TokenRecord, client: Client, request: Any) -> bool:
        return token.app_id == client.app.id  # an app introspects only its own tokens

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        settings = get_settings()
        body: dict[str, Any] = {"active": True, "client_id": token.app_id, "token_type": token.kind,
                                "scope": token.scope, "sub": token.user_id, "iss": settings.oauth_issuer,
                                "exp": int(token.expires_at.timestamp()), "iat": token.iat}
        if token.kind == "access_token":
            body.update(aud=settings.oauth_token_audience, jti=token.jti, token_type="Bearer")
        return body


# --- consent -------------------------------------------------------------------------------------

def upsert_grant(user_id: str, app_id: str, scopes: list[str]) -> str:
    """Remember the user's consent (the union of what they allowed so far); returns the grant id."""
    session = db()
    grant = session.scalar(select(OAuthGrant).where(OAuthGrant.user_id == user_id, OAuthGrant.app_id == app_id,
                                                    OAuthGrant.revoked_at.is_(None)).with_for_update())
    if grant is None:
        grant = OAuthGrant(id=new_id("grant"), user_id=user_id, app_id=app_id, scopes=sorted(set(scopes)))
        session.add(grant)
    else:
        grant.scopes = sorted(set(grant.scopes) | set(scopes))
        grant.updated_at = utcnow()
    session.flush()
    return grant.id
