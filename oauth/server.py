"""authlib's AuthorizationServer, adapted to Litestar.

How authlib's synchronous code is kept off the event loop
---------------------------------------------------------
authlib calls storage hooks synchronously (`query_client`, `query_authorization_code`,
`save_token`, …). Every call into authlib runs inside `AsyncSession.run_sync` (see `run`): the
hooks receive SQLAlchemy's *synchronous facade* of the request's own async session, and each of
their queries is awaited on asyncpg through SQLAlchemy's greenlet bridge. So the loop never
blocks on I/O (other requests run while a hook waits for PostgreSQL), no thread pool or second
(sync) driver is needed, the hooks share the request's transaction (row locks such as
`SELECT … FOR UPDATE` on a code or refresh token serialize concurrent replays), and the code stays
straight-line. What runs on the loop is authlib's CPU work, microseconds, plus one RSA-2048
signature per token issued (~0.3 ms). We chose this over preloading data for authlib because the
data it needs depends on its own parsing (client auth method, code vs refresh token, reuse
detection mid-flow), and over `anyio.to_thread` because that needs a sync driver and a second
connection pool, and loses the shared transaction.

Side effects that need Redis (the access-token deny-list) are collected in the `OAuthContext`
during the sync part and pushed by the async caller afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
)

from marketplace.core.db import utcnow
from marketplace.settings import get_settings
from oauth.context import OAuthContext, ctx, db, internal_id, run
from oauth.grants import (
    AuthorizationCodeGrant,
    Client,
    ClientCredentialsGrant,
    IntrospectionEndpoint,
    OAuthUser,
    RefreshTokenGrant,
    RevocationEndpoint,
    S256Only,
    TokenGenerator,
    check_scope_syntax,
    query_app,
    upsert_grant,
)
from oauth.models import OAuthAccessToken, OAuthGrant, OAuthRefreshToken

# --- requests -----------------------------------------------------------------------------------

class _Payload(OAuth2Payload):
    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class LitestarOAuth2Request(OAuth2Request):
    """An authlib request built from what the Litestar handler already read (query or form pairs).

    authlib's constructor refuses plain-http URIs; TLS is the deployment's job (we run behind a
    terminating proxy, and tests use http), so the check is skipped here."""

    def __init__(self, method: str, uri: str, headers: Any, pairs: list[tuple[str, str]]) -> None:
        self.method, self.uri, self.headers = method, uri, headers
        self._body = None
        self.payload = _Payload(pairs)
        self.client = self.auth_method = self.user = self.authorization_code = None
        self.refresh_token = self.credential = None
        self._scope = None

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data if self.method == "POST" else {}


# --- the server -------------------------------------------------------------------------------------

class AuthorizationServer(_AuthorizationServer):
    def __init__(self) -> None:
        super().__init__()
        self.register_token_generator("default", TokenGenerator())
        self.register_grant(AuthorizationCodeGrant, [S256Only(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(RevocationEndpoint)
        self.register_endpoint(IntrospectionEndpoint)

    def query_client(self, client_id: str) -> Client | None:
        return query_app(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        session, issued = db(), ctx().issued
        family_id = grant_id = None
        if request.refresh_token is not None:
            family_id, grant_id = request.refresh_token.row.family_id, request.refresh_token.row.grant_id
        elif request.authorization_code is not None:
            code_row = request.authorization_code.row
            family_id, grant_id = internal_id("fam"), code_row.grant_id
            code_row.family_id = family_id
        app_id = request.client.app.id
        session.add(OAuthAccessToken(jti=issued["jti"], app_id=app_id, user_id=issued["sub"], grant_id=grant_id,
                                     family_id=family_id, scope=issued["scope"], expires_at=issued["expires_at"]))
        refresh = issued.get("refresh")
        if refresh is not None:
            session.add(OAuthRefreshToken(
                id=internal_id("rt"), token_hash=refresh.hash, prefix=refresh.prefix, app_id=app_id,
                user_id=issued["sub"], grant_id=grant_id, family_id=family_id or internal_id("fam"),
                scope=issued["scope"],
                expires_at=utcnow() + timedelta(days=get_settings().oauth_refresh_token_ttl_days)))
        session.flush()

    def validate_requested_scope(self, scope: str | None) -> None:
        check_scope_syntax(scope)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request  # built by the route (LitestarOAuth2Request)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, Any, list]:
        return status, body, headers

    def handle_error_response(self, request: Any, error: Any) -> tuple[int, Any, list]:
        if isinstance(error, InvalidClientError) and not error.redirect_uri:
            error.status_code = 401  # RFC 6749 §5.2: invalid_client is 401 with a challenge
            status, body, headers = error(None)
            return status, body, [*headers, ("WWW-Authenticate", 'Basic realm="oauth"')]
        return super().handle_error_response(request, error)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


SERVER = AuthorizationServer()


def authorization_step(context: OAuthContext, oreq: LitestarOAuth2Request, user_id: str | None,
                       allowed: set[str], remembered: OAuthGrant | None, decision: str | None) -> tuple[str, Any]:
    """The authorization endpoint's decision (sync, inside `run`). Returns one of
    ("error", OAuth2Error) — show the error page, never redirect (unknown client or redirect URI);
    ("login", None) — no session; ("consent", (app name, redirect URI, scopes)) — show the page;
    ("response", (status, body, headers)) — redirect back to the client (code or error).

    `allowed`: the scopes the user's live subscriptions grant; `remembered`: their grant for this
    app; `decision`: None on GET, "allow"/"deny" from the consent form."""
    try:
        grant = SERVER.get_consent_grant(oreq, end_user=OAuthUser(user_id) if user_id else None)
    except OAuth2Error as error:
        if error.redirect_uri:  # the client and its redirect URI are valid: tell the client
            return "response", SERVER.handle_error_response(oreq, error)
        return "error", error
    if user_id is None:
        return "login", None
    requested = check_scope_syntax(oreq.scope)
    missing = [s for s in requested if s not in allowed]
    if missing:
        error = InvalidScopeError(f"No live subscription of this user grants {' '.join(missing)}.",
                                  redirect_uri=grant.redirect_uri, state=oreq.payload.state)
        return "response", SERVER.handle_error_response(oreq, error)
    if decision is None:
        if remembered is not None and set(requested) <= set(remembered.scopes):
            context.grant_id = remembered.id  # consent remembered: no page
            return "response", SERVER.create_authorization_response(oreq, OAuthUser(user_id), grant)
        return "consent", (grant.client.app.name, grant.redirect_uri, requested)
    if decision == "allow":
        context.grant_id = upsert_grant(user_id, grant.client.app.id, requested)
        return "response", SERVER.create_authorization_response(oreq, OAuthUser(user_id), grant)
    return "response", SERVER.create_authorization_response(oreq, None, grant)  # access_denied


__all__ = ["SERVER", "Client", "LitestarOAuth2Request", "OAuthContext", "OAuthUser", "authorization_step",
           "check_scope_syntax", "run", "upsert_grant"]
