"""Accounts: sign-up, login, the caller, personal access tokens; the /login and /logout pages."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Controller, Request, delete, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts import service
from marketplace.accounts.schemas import (
    LoginIn,
    LoginOut,
    MembershipOut,
    MeOut,
    SignupIn,
    SignupOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    UserOut,
)
from marketplace.core.auth import SESSION_COOKIE
from marketplace.core.errors import Problem, TooManyRequests, Unauthorized
from marketplace.core.security import Principal
from partners.models import Membership, Partner


async def provide_principal(request: Request[Any, Any, Any], db_session: AsyncSession) -> Principal:
    """The `principal` dependency: the user behind `Authorization: Bearer <token>`."""
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Unauthorized("Missing bearer token. Send Authorization: Bearer <token>; get one from POST /v1/login.",
                           headers={"WWW-Authenticate": "Bearer"})
    principal = await service.authenticate(db_session, raw.strip())
    if principal is None:
        principal = await _oauth_principal(request, raw.strip())
    if principal is None:
        raise Unauthorized("Invalid or expired token. Get a new one with POST /v1/login.",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return principal


async def _oauth_principal(request: Request[Any, Any, Any], raw: str) -> Principal | None:
    """Hook for OAuth access tokens on management endpoints (filled by the OAuth domain)."""
    resolver = getattr(request.app.state, "oauth_principal_resolver", None)
    return await resolver(request, raw) if resolver else None


async def session_principal(request: Request[Any, Any, Any], db_session: AsyncSession) -> Principal | None:
    """The user behind the browser session cookie, for HTML pages; None when logged out."""
    raw = request.cookies.get(SESSION_COOKIE)
    return await service.authenticate(db_session, raw) if raw else None


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: an open redirect would let phishing pages borrow our login.
    # Browsers read a backslash as a slash ("/\\evil" is "//evil") and drop tabs and newlines.
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc \
            or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/dashboard"
    return target


class AccountController(Controller):
    path = "/v1"
    tags = ["accounts"]

    @post("/signup", status_code=HTTP_201_CREATED, operation_id="signup", summary="Create an account")
    async def signup(self, data: SignupIn, db_session: AsyncSession) -> SignupOut:
        user, token = await service.signup(db_session, email=data.email, password=data.password, name=data.name)
        return SignupOut(user=UserOut(id=user.id, email=user.email, name=user.name), token=token.value)

    @post("/login", status_code=HTTP_200_OK, operation_id="login", summary="Log in and get a token")
    async def login(self, request: Request[Any, Any, Any], data: LoginIn, db_session: AsyncSession) -> LoginOut:
        redis, client = request.app.state.redis, _client(request)
        wait = await service.login_retry_after(redis, data.email, client)
        if wait:
            raise TooManyRequests(f"Too many failed logins for this account from your address. Try to log in again "
                                  f"in {wait} seconds.", headers={"Retry-After": str(wait)})
        try:
            _, token, row = await service.login(db_session, email=data.email, password=data.password)
        except Unauthorized:
            await service.record_login_failure(redis, data.email, client)
            raise
        await service.clear_login_failures(redis, data.email, client)
        return LoginOut(token=token.value, expires_at=row.expires_at)

    @get("/me", operation_id="me", summary="The caller, with partner memberships")
    async def me(self, principal: Principal, db_session: AsyncSession) -> MeOut:
        user = await service.get_user(db_session, principal.user_id)
        rows = await db_session.execute(
            select(Membership.partner_id, Partner.name, Membership.role)
            .join(Partner, Partner.id == Membership.partner_id)
            .where(Membership.user_id == user.id)
            .order_by(Partner.id)
        )
        return MeOut(id=user.id, email=user.email, name=user.name, is_operator=user.is_operator,
                     partners=[MembershipOut(partner_id=p, partner_name=n, role=r) for p, n, r in rows],
                     created_at=user.created_at)

    @get("/tokens", operation_id="listTokens", summary="Your personal access tokens (without secrets)")
    async def list_tokens(self, principal: Principal, db_session: AsyncSession) -> list[TokenOut]:
        rows = await service.list_tokens(db_session, principal.user_id)
        return [TokenOut(id=t.id, name=t.name, prefix=t.prefix, kind=t.kind, created_at=t.created_at,
                         expires_at=t.expires_at, last_used_at=t.last_used_at, revoked_at=t.revoked_at) for t in rows]

    @post("/tokens", status_code=HTTP_201_CREATED, operation_id="createToken",
          summary="Create a personal access token (shown once)")
    async def create_token(self, data: TokenIn, principal: Principal, db_session: AsyncSession) -> TokenCreatedOut:
        from datetime import timedelta

        user = await service.get_user(db_session, principal.user_id)
        token, row = await service.issue_token(db_session, user, kind=service.PAT_KIND, name=data.name,
                                               ttl=timedelta(days=data.expires_in_days))
        return TokenCreatedOut(id=row.id, name=row.name, prefix=row.prefix, token=token.value, expires_at=row.expires_at)

    @delete("/tokens/{token_id:str}", operation_id="revokeToken", summary="Revoke a personal access token")
    async def revoke_token(self, token_id: str, principal: Principal, db_session: AsyncSession) -> None:
        await service.revoke_token(db_session, principal.user_id, token_id)


class LoginPageController(Controller):
    tags = ["pages"]
    include_in_schema = False

    @get("/login")
    async def login_page(self, next: str | None = None) -> Template:
        return Template("login.html", context={"next": _safe_next(next), "error": None})

    @post("/login", status_code=HTTP_200_OK)
    async def login_submit(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
        db_session: AsyncSession,
    ) -> Template | Redirect:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return Template("login.html", context={"next": "/dashboard", "error": "Cross-site login refused."},
                            status_code=403)
        next_url = _safe_next(data.get("next"))
        redis, client, email = request.app.state.redis, _client(request), data.get("email", "")
        wait = await service.login_retry_after(redis, email, client)
        if wait:
            return Template("login.html", context={"next": next_url, "email": email,
                                                   "error": f"Too many failed logins. Try again in {wait} seconds."},
                            status_code=429, headers={"Retry-After": str(wait)})
        try:
            _, token, row = await service.login(db_session, email=email, password=data.get("password", ""),
                                                kind=service.SESSION_KIND)
        except Problem:
            await service.record_login_failure(redis, email, client)
            return Template("login.html", context={"next": next_url, "error": "Wrong email or password.",
                                                   "email": email}, status_code=401)
        await service.clear_login_failures(redis, email, client)
        response = Redirect(next_url, status_code=303)
        response.set_cookie(SESSION_COOKIE, token.value, httponly=True, samesite="lax", path="/",
                            secure=request.url.scheme == "https", expires=row.expires_at)
        return response

    @get("/logout")
    async def logout(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Redirect:
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            await service.revoke_session(db_session, raw)
        response = Redirect("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


ROUTES = [AccountController, LoginPageController]
