"""OAuth 2.0: apps (clients) and grants under /v1 (problem+json), and the protocol endpoints
under /oauth and /.well-known (RFC 6749 JSON errors, HTML for the consent page)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Litestar, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import Template
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.auth import SESSION_COOKIE
from marketplace.core.pagination import Page, paginate
from marketplace.core.security import Principal, check_csrf, csrf_token
from marketplace.settings import get_settings
from oauth import keys, service
from oauth.models import OAuthApp, OAuthGrant
from oauth.schemas import AppCreatedOut, AppIn, AppOut, GrantOut, SecretOut
from oauth.server import SERVER, LitestarOAuth2Request, authorization_step, run
from oauth.tokens import KEY_RING
from partners.publishing.models import Api, Scope

# A cursor is an id from the previous page; anything else is refused before it reaches the database.
Cursor = Annotated[str | None, Parameter(pattern=r"^[a-z]{2,4}_[0-9a-z]{26}$", description="The last id of the previous page")]
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'", "Referrer-Policy": "no-referrer"}
OAUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                "code_challenge_method")


def _auth_method(app: OAuthApp) -> str:
    return "none" if app.public else "client_secret_basic"


def _app_out(app: OAuthApp) -> AppOut:
    return AppOut(id=app.id, client_id=app.id, name=app.name, redirect_uris=app.redirect_uris, public=app.public,
                  grant_types=app.grant_types, token_endpoint_auth_method=_auth_method(app),
                  secret_prefix=app.secret_prefix, created_at=app.created_at)


class AppController(Controller):
    path = "/v1/apps"
    tags = ["oauth"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createApp",
          summary="Create an app (OAuth client); a confidential app's secret is shown once")
    async def create(self, data: AppIn, principal: Principal, db_session: AsyncSession) -> AppCreatedOut:
        app, secret = await service.create_app(db_session, principal.user_id, name=data.name,
                                               redirect_uris=data.redirect_uris, public=data.public,
                                               grant_types=list(data.grant_types) if data.grant_types else None)
        return AppCreatedOut(id=app.id, client_id=app.id, name=app.name, redirect_uris=app.redirect_uris,
                             public=app.public, grant_types=app.grant_types,
                             token_endpoint_auth_method=_auth_method(app), created_at=app.created_at,
                             client_secret=secret)

    @get("/", operation_id="listApps", summary="Your apps, newest first (without secrets)")
    async def list_apps(self, principal: Principal, db_session: AsyncSession, limit: int | None = None,
                        starting_after: Cursor = None) -> Page[AppOut]:
        return await paginate(db_session, service.apps_of(principal.user_id), OAuthApp.id, limit=limit,
                              starting_after=starting_after, to_schema=_app_out)

    @get("/{app_id:str}", operation_id="getApp", summary="One of your apps")
    async def get_app(self, app_id: str, principal: Principal, db_session: AsyncSession) -> AppOut:
        return _app_out(await service.get_app(db_session, principal.user_id, app_id))

    @delete("/{app_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="deleteApp",
            summary="Delete an app; its tokens stop working at once")
    async def delete_app(self, request: Request[Any, Any, Any], app_id: str, principal: Principal,
                         db_session: AsyncSession) -> None:
        await service.delete_app(db_session, request.app.state.redis, principal.user_id, app_id)

    @post("/{app_id:str}/rotate-secret", status_code=200, operation_id="rotateAppSecret",
          summary="Replace a confidential app's client secret (the new one is shown once)")
    async def rotate_secret(self, app_id: str, principal: Principal, db_session: AsyncSession) -> SecretOut:
        app, secret = await service.rotate_secret(db_session, principal.user_id, app_id)
        return SecretOut(client_id=app.id, client_secret=secret)


class GrantController(Controller):
    path = "/v1/oauth/grants"
    tags = ["oauth"]

    @get("/", operation_id="listGrants", summary="Apps you have authorized, with the scopes you allowed (newest first)")
    async def list_grants(self, principal: Principal, db_session: AsyncSession, limit: int | None = None,
                          starting_after: Cursor = None) -> Page[GrantOut]:
        page = await paginate(db_session, service.grants_of(principal.user_id), OAuthGrant.id, limit=limit,
                              starting_after=starting_after, to_schema=lambda g: g)
        names = await service.app_names(db_session, {g.app_id for g in page.data})
        return Page(data=[GrantOut(id=g.id, app_id=g.app_id, app_name=names.get(g.app_id, ""), scopes=g.scopes,
                                   created_at=g.created_at, updated_at=g.updated_at) for g in page.data],
                    has_more=page.has_more, next_cursor=page.next_cursor)

    @delete("/{grant_id:str}", status_code=HTTP_204_NO_CONTENT, operation_id="revokeGrant",
            summary="Revoke an app's authorization and every token issued under it")
    async def revoke(self, request: Request[Any, Any, Any], grant_id: str, principal: Principal,
                     db_session: AsyncSession) -> None:
        await service.revoke_grant(db_session, request.app.state.redis, principal.user_id, grant_id)


# --- protocol endpoints -------------------------------------------------------------------------

def _to_response(result: tuple[int, Any, list[tuple[str, str]]]) -> Response[Any]:
    status, body, headers = result
    header_map = dict(headers)
    if status in (301, 302, 303):
        return Response(content=b"", status_code=302, headers={"Location": header_map["Location"],
                                                               "Cache-Control": "no-store"})
    header_map.pop("Content-Type", None)
    header_map.setdefault("Cache-Control", "no-store")
    header_map.setdefault("Pragma", "no-cache")
    return Response(content=body, status_code=status, headers=header_map, media_type="application/json")


def _error_page(error: str, description: str, status: int = 400) -> Template:
    return Template("oauth/error.html", context={"error": error, "description": description},
                    status_code=status, headers=PAGE_HEADERS)


def _oauth_request(request: Request[Any, Any, Any], method: str, pairs: list[tuple[str, str]]) -> LitestarOAuth2Request:
    return LitestarOAuth2Request(method, str(request.url), request.headers, pairs)


async def _form_pairs(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    try:
        form = await request.form()
    except Exception:  # a body that is not a form: treat as empty, authlib answers invalid_request
        return []
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


async def _authorize(request: Request[Any, Any, Any], db_session: AsyncSession, pairs: list[tuple[str, str]],
                     decision: str | None) -> Response[Any] | Template:
    raw_session = request.cookies.get(SESSION_COOKIE)
    user = await service.session_user(db_session, raw_session)
    client_id = dict(pairs).get("client_id")
    allowed: set[str] = set()
    remembered = None
    if user is not None and service.is_client_id(client_id):
        allowed = await service.live_scopes(db_session, user.id)
        remembered = await service.live_grant(db_session, user.id, str(client_id))
    oreq = _oauth_request(request, "GET" if decision is None else "POST", pairs)

    kind, value = await run(db_session, request.app.state.redis,
                            lambda context: authorization_step(context, oreq, user.id if user else None, allowed,
                                                               remembered, decision))
    if kind == "error":
        return _error_page(value.error, value.get_error_description() or "The authorization request is not valid.")
    if kind == "login":
        query = urlencode([(k, v) for k, v in pairs if k in OAUTH_PARAMS])
        return Response(content=b"", status_code=303,
                        headers={"Location": "/login?" + urlencode({"next": f"/oauth/authorize?{query}"})})
    if kind == "response":
        return _to_response(value)
    app_name, redirect_uri, requested = value
    assert user is not None and raw_session
    scopes = await service.describe_scopes(db_session, user.id, requested)
    hidden = [(k, v) for k, v in pairs if k in OAUTH_PARAMS]
    return Template("oauth/consent.html", headers=PAGE_HEADERS, context={
        "app_name": app_name, "scopes": scopes, "hidden": hidden, "csrf_token": csrf_token(raw_session),
        "user": user, "redirect_host": redirect_uri.split("/")[2] if "://" in redirect_uri else redirect_uri,
    })


class OAuthController(Controller):
    tags = ["oauth"]
    include_in_schema = False

    @get("/oauth/authorize")
    async def authorize(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any] | Template:
        return await _authorize(request, db_session, list(request.query_params.multi_items()), None)

    @post("/oauth/authorize", status_code=200)
    async def consent(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any] | Template:
        pairs = await _form_pairs(request)
        form = dict(pairs)
        raw_session = request.cookies.get(SESSION_COOKIE)
        oauth_pairs = [(k, v) for k, v in pairs if k in OAUTH_PARAMS]
        if raw_session and not check_csrf(raw_session, form.get("csrf_token")):
            return _error_page("invalid_request", "The form expired or did not come from this site "
                               "(CSRF check failed). Start the authorization again.", 403)
        decision = form.get("decision")
        if decision not in ("allow", "deny"):
            return _error_page("invalid_request", "Choose Allow or Deny.")
        return await _authorize(request, db_session, oauth_pairs, decision)

    @post("/oauth/token", status_code=200)
    async def token(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
        oreq = _oauth_request(request, "POST", await _form_pairs(request))
        return _to_response(await run(db_session, request.app.state.redis, lambda _: SERVER.create_token_response(oreq)))

    @post("/oauth/revoke", status_code=200)
    async def revoke(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
        oreq = _oauth_request(request, "POST", await _form_pairs(request))
        return _to_response(await run(db_session, request.app.state.redis,
                                      lambda _: SERVER.create_endpoint_response("revocation", oreq)))

    @post("/oauth/introspect", status_code=200)
    async def introspect(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
        oreq = _oauth_request(request, "POST", await _form_pairs(request))
        return _to_response(await run(db_session, request.app.state.redis,
                                      lambda _: SERVER.create_endpoint_response("introspection", oreq)))

    @get(["/oauth/jwks", "/.well-known/jwks.json"])
    async def jwks(self, db_session: AsyncSession) -> Response[Any]:
        return Response(content=await keys.public_jwks(db_session), headers={"Cache-Control": "public, max-age=60"},
                        media_type="application/json")

    @get("/.well-known/oauth-authorization-server")
    async def metadata(self, db_session: AsyncSession) -> Response[Any]:
        issuer = get_settings().oauth_issuer
        scopes = (await db_session.scalars(select(Scope.name).join(Api, Api.id == Scope.api_id)
                                           .where(Api.status == "published").distinct().order_by(Scope.name))).all()
        body = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "scopes_supported": list(scopes),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "service_documentation": f"{issuer}/schema",
        }
        return Response(content=body, headers={"Cache-Control": "public, max-age=300"}, media_type="application/json")


@contextlib.asynccontextmanager
async def oauth_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Make sure a signing key exists and load the public key set into this process's key ring."""
    async with app.state.sessionmaker.begin() as session:
        await keys.ensure_signing_key(session)
    await keys.refresh_key_ring(app.state.sessionmaker, KEY_RING)
    yield


ROUTES = [AppController, GrantController, OAuthController]
LIFESPANS = [oauth_lifespan]

