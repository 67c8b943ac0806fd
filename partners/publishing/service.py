"""API publishing rules: APIs and their lifecycle, scopes, endpoints. Plans are in `plans.py`.

Every partner-owned object is reached through `load_api`, which answers 404 unless the caller is
a member of the API's partner (the same answer as for an id that does not exist). Every change
the gateway caches (status, upstream, proxy secret, endpoints, scopes, plans) goes through
`touch`, which bumps `Api.revision` and invalidates the gateway's cache entry after the commit.
Services never commit.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core import events
from marketplace.core.cache import invalidate_after_commit
from marketplace.core.db import Base, utcnow
from marketplace.core.errors import Conflict, NotFound, Unprocessable
from marketplace.core.ids import new_id
from marketplace.core.pagination import Page, paginate
from marketplace.core.security import Principal, decrypt, encrypt
from marketplace.core.ssrf import UnsafeURL, resolve_public
from marketplace.core.tenancy import partner_role
from partners.publishing.models import Api, Endpoint, Plan, PlanVersion, Scope
from partners.publishing.schemas import ApiIn, ApiPatch, EndpointIn, EndpointPatch, ScopeIn

PROXY_SECRET_HEADER = "X-Marketplace-Proxy-Secret"


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _no_api(api_id: str) -> NotFound:
    return NotFound(f"No API {api_id!r} among your partners' APIs. List them with GET /v1/apis.")


# --- loading and cache invalidation -------------------------------------------------------------

async def load_api(session: AsyncSession, principal: Principal, api_id: str, *, for_update: bool = False) -> Api:
    """The API if the caller is a member of its partner; 404 otherwise (whether or not it exists)."""
    stmt = select(Api).where(Api.id == api_id)
    if for_update:
        stmt = stmt.with_for_update()
    api = await session.scalar(stmt)
    if api is None:
        raise _no_api(api_id)
    try:
        await partner_role(session, principal, api.partner_id)
    except NotFound:
        raise _no_api(api_id) from None
    return api


def touch(session: AsyncSession, api: Api) -> None:
    """Record a change the gateway caches: new revision, and drop cached copies after the commit."""
    api.revision = (api.revision or 0) + 1
    api.updated_at = utcnow()
    invalidate_after_commit(session, "api", api.slug)


# --- APIs ---------------------------------------------------------------------------------------

async def check_upstream(url: str, field: str = "upstream_url") -> str:
    """The upstream base URL, without a trailing slash; 422 when it is malformed or not public."""
    url = url.strip()
    parts = urlsplit(url)
    problem: str | None = None
    if parts.query or parts.fragment:
        problem = "must not contain a query string or fragment; give the base URL that endpoint paths are appended to"
    else:
        try:
            await resolve_public(url)
        except UnsafeURL as exc:
            problem = str(exc)
    if problem:
        raise Unprocessable(f"The upstream URL {url!r} {problem}.", errors=[field_error(field, problem)],
                            slug="invalid-upstream")
    return url.rstrip("/")


def _clean_tags(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tag.strip().lower() for tag in tags))


async def create_api(session: AsyncSession, principal: Principal, data: ApiIn) -> Api:
    await partner_role(session, principal, data.partner_id)
    upstream = await check_upstream(data.upstream_url)
    if await session.scalar(select(Api.id).where(Api.slug == data.slug)):
        raise _slug_taken(data.slug)
    api = Api(
        id=new_id("api"), partner_id=data.partner_id, slug=data.slug, name=data.name.strip(),
        description=data.description.strip(), upstream_url=upstream,
        category=data.category.strip().lower() if data.category else None,
        tags=_clean_tags(data.tags), status="draft", revision=1,
        proxy_secret_encrypted=encrypt(secrets.token_urlsafe(32)),
    )
    session.add(api)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same slug
        raise _slug_taken(data.slug) from exc
    return api


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"The slug {slug!r} is taken. Choose another one.", slug="slug-taken",
                    errors=[field_error("slug", "already taken")])


def member_partner_ids(principal: Principal) -> Any:
    members = Base.metadata.tables["partner_members"]
    return select(members.c.partner_id).where(members.c.user_id == principal.user_id)


async def list_apis(session: AsyncSession, principal: Principal, *, partner_id: str | None, status: str | None,
                    limit: int | None, starting_after: str | None, to_schema: Any) -> Page[Any]:
    stmt: Select[Any] = select(Api)
    if partner_id:
        await partner_role(session, principal, partner_id)
        stmt = stmt.where(Api.partner_id == partner_id)
    else:
        stmt = stmt.where(Api.partner_id.in_(member_partner_ids(principal)))
    if status:
        stmt = stmt.where(Api.status == status)
    return await paginate(session, stmt, Api.id, limit=limit, starting_after=starting_after, to_schema=to_schema)


async def update_api(session: AsyncSession, api: Api, patch: ApiPatch) -> Api:
    changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not msgspec.UNSET}
    if "upstream_url" in changes:
        changes["upstream_url"] = await check_upstream(changes["upstream_url"])
    if "tags" in changes:
        changes["tags"] = _clean_tags(changes["tags"])
    if changes.get("category"):
        changes["category"] = changes["category"].strip().lower()
    for name in ("name", "description"):
        if name in changes:
            changes[name] = changes[name].strip()
    if "name" in changes and not changes["name"]:
        raise Unprocessable("The name must not be blank.", errors=[field_error("name", "must not be blank")])
    changed = False
    for name, value in changes.items():
        if getattr(api, name) != value:
            setattr(api, name, value)
            changed = True
    if changed:
        touch(session, api)
        await session.flush()
    return api


def proxy_secret(api: Api) -> str:
    return decrypt(api.proxy_secret_encrypted)


async def rotate_proxy_secret(session: AsyncSession, api: Api) -> str:
    secret = secrets.token_urlsafe(32)
    api.proxy_secret_encrypted = encrypt(secret)
    touch(session, api)
    await session.flush()
    return secret


# --- lifecycle ----------------------------------------------------------------------------------

async def publish_problems(session: AsyncSession, api: Api) -> list[dict[str, str]]:
    """What stops the API from being published, as field errors; empty when it is complete."""
    problems: list[dict[str, str]] = []
    if not api.description.strip():
        problems.append(field_error("description", f"add a description: PATCH /v1/apis/{api.id} "
                                                   "with {\"description\": \"…\"}"))
    try:
        await resolve_public(api.upstream_url)
    except UnsafeURL as exc:
        problems.append(field_error("upstream_url", f"the upstream URL {exc}; change it with PATCH /v1/apis/{api.id}"))
    endpoints = await session.scalar(select(func.count()).select_from(Endpoint).where(Endpoint.api_id == api.id))
    if not endpoints:
        problems.append(field_error("endpoints", f"add at least one endpoint: POST /v1/apis/{api.id}/endpoints "
                                                 f"(or import an OpenAPI document: POST /v1/apis/{api.id}/import-openapi)"))
    plans = await session.scalar(select(func.count()).select_from(Plan)
                                 .where(Plan.api_id == api.id, Plan.status == "active"))
    if not plans:
        problems.append(field_error("plans", f"add at least one active plan: POST /v1/apis/{api.id}/plans"))
    return problems


def _event_data(api: Api, **extra: Any) -> dict[str, Any]:
    return {"id": api.id, "slug": api.slug, "name": api.name, "partner_id": api.partner_id,
            "status": api.status, "revision": api.revision, **extra}


async def publish_api(session: AsyncSession, api: Api) -> Api:
    if api.status == "suspended":
        raise Conflict("This API is suspended by the platform's operators and cannot be published. "
                       "Contact support to have it reviewed.", slug="api-suspended")
    if api.status == "published":
        return api
    problems = await publish_problems(session, api)
    if problems:
        raise Unprocessable(
            "The API is not ready to publish. Missing: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            + ".", errors=problems, slug="api-incomplete", title="API incomplete")
    api.status = "published"
    api.published_at = utcnow()
    touch(session, api)
    events.publish(session, "api.published", _event_data(api), partner_id=api.partner_id)
    await session.flush()
    return api


async def unpublish_api(session: AsyncSession, api: Api) -> Api:
    """Back to draft: hidden from the catalog, no new subscriptions."""
    if api.status == "suspended":
        raise Conflict("This API is suspended by the platform's operators; it is already hidden.",
                       slug="api-suspended")
    if api.status == "draft":
        return api
    api.status = "draft"
    api.published_at = None
    touch(session, api)
    events.publish(session, "api.unpublished", _event_data(api), partner_id=api.partner_id)
    await session.flush()
    return api


async def list_all_apis(session: AsyncSession, *, partner_id: str | None, status: str | None, limit: int | None,
                        starting_after: str | None, to_schema: Any) -> Page[Any]:
    """Operators: every API on the platform, newest first."""
    stmt: Select[Any] = select(Api)
    if partner_id:
        stmt = stmt.where(Api.partner_id == partner_id)
    if status:
        stmt = stmt.where(Api.status == status)
    return await paginate(session, stmt, Api.id, limit=limit, starting_after=starting_after, to_schema=to_schema)


async def load_api_as_operator(session: AsyncSession, api_id: str) -> Api:
    api = await session.scalar(select(Api).where(Api.id == api_id).with_for_update())
    if api is None:
        raise NotFound(f"No API {api_id!r}.")
    return api


async def suspend_api(session: AsyncSession, api: Api, reason: str) -> Api:
    if api.status != "suspended":
        api.status = "suspended"
        touch(session, api)
        events.publish(session, "api.suspended", _event_data(api, reason=reason), partner_id=api.partner_id)
        await session.flush()
    return api


async def unsuspend_api(session: AsyncSession, api: Api) -> Api:
    """Back to where it was: published if it was published when suspended, else draft."""
    if api.status == "suspended":
        api.status = "published" if api.published_at is not None else "draft"
        touch(session, api)
        events.publish(session, "api.unsuspended", _event_data(api), partner_id=api.partner_id)
        await session.flush()
    return api


# --- scopes -------------------------------------------------------------------------------------

async def scope_names(session: AsyncSession, api_id: str) -> set[str]:
    return set((await session.scalars(select(Scope.name).where(Scope.api_id == api_id))).all())


async def create_scope(session: AsyncSession, api: Api, data: ScopeIn) -> Scope:
    if data.name in await scope_names(session, api.id):
        raise Conflict(f"The API already has the scope {data.name!r}.", errors=[field_error("name", "already exists")])
    scope = Scope(id=new_id("scope"), api_id=api.id, name=data.name, description=data.description.strip())
    session.add(scope)
    touch(session, api)
    await session.flush()
    return scope


async def list_scopes(session: AsyncSession, api: Api, *, limit: int | None, starting_after: str | None,
                      to_schema: Any) -> Page[Any]:
    return await paginate(session, select(Scope).where(Scope.api_id == api.id), Scope.id,
                          limit=limit, starting_after=starting_after, to_schema=to_schema)


async def delete_scope(session: AsyncSession, api: Api, scope_id: str) -> None:
    scope = await session.scalar(select(Scope).where(Scope.id == scope_id, Scope.api_id == api.id))
    if scope is None:
        raise NotFound(f"No scope {scope_id!r} on this API. List them with GET /v1/apis/{api.id}/scopes.")
    endpoints = (await session.execute(select(Endpoint.method, Endpoint.path).where(
        Endpoint.api_id == api.id, Endpoint.scope == scope.name))).all()
    plans = (await session.scalars(select(PlanVersion.name).join(Plan, Plan.id == PlanVersion.plan_id).where(
        Plan.api_id == api.id, PlanVersion.scopes.contains([scope.name])).distinct())).all()
    if endpoints or plans:
        users = [f"endpoint {m} {p}" for m, p in endpoints] + [f"plan {name!r}" for name in plans]
        raise Conflict(f"The scope {scope.name!r} is in use by {', '.join(users)}. "
                       "Change or delete those first.", slug="scope-in-use")
    await session.delete(scope)
    touch(session, api)
    await session.flush()


# --- endpoints ----------------------------------------------------------------------------------

_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/{}]*$")


def path_template_problem(path: str) -> str | None:
    """Why `path` is not a valid template (None when it is): `/forecast/{city}`, braces balanced,
    parameter names unique, one parameter at most per braces, no query string."""
    if not path.startswith("/"):
        return "must start with '/'"
    if "?" in path or "#" in path:
        return "must not contain a query string or fragment"
    if "//" in path:
        return "must not contain empty segments ('//')"
    if not _PATH_CHARS.match(path):
        return "contains characters that are not allowed in a URL path (encode them with %XX)"
    names: list[str] = []
    depth_open: int | None = None
    for index, char in enumerate(path):
        if char == "{":
            if depth_open is not None:
                return "has nested braces"
            depth_open = index
        elif char == "}":
            if depth_open is None:
                return "has a '}' without a matching '{'"
            name = path[depth_open + 1:index]
            if not _PARAM.match(name):
                return f"has an invalid parameter name {{{name}}} (letters, digits and _ . -, not starting with a digit)"
            if name in names:
                return f"uses the parameter {{{name}}} twice"
            names.append(name)
            depth_open = None
        elif char == "/" and depth_open is not None:
            return "has a '{' without a matching '}' in its segment"
    if depth_open is not None:
        return "has a '{' without a matching '}'"
    return None


async def _check_endpoint(session: AsyncSession, api: Api, path: str, scope: str | None) -> None:
    errors = []
    problem = path_template_problem(path)
    if problem:
        errors.append(field_error("path", problem))
    if scope is not None and scope not in await scope_names(session, api.id):
        errors.append(field_error("scope", f"the API has no scope {scope!r}; create it with "
                                           f"POST /v1/apis/{api.id}/scopes first"))
    if errors:
        raise Unprocessable("Fix these fields: " + "; ".join(f"{e['field']} {e['message']}" for e in errors) + ".",
                            errors=errors)


async def _check_unique_endpoint(session: AsyncSession, api: Api, method: str, path: str,
                                 exclude_id: str | None = None) -> None:
    stmt = select(Endpoint.id).where(Endpoint.api_id == api.id, Endpoint.method == method, Endpoint.path == path)
    if exclude_id:
        stmt = stmt.where(Endpoint.id != exclude_id)
    if await session.scalar(stmt):
        raise Conflict(f"The API already has the endpoint {method} {path}. Change it with PATCH instead.",
                       errors=[field_error("path", "already exists for this method")])


async def create_endpoint(session: AsyncSession, api: Api, data: EndpointIn) -> Endpoint:
    await _check_endpoint(session, api, data.path, data.scope)
    await _check_unique_endpoint(session, api, data.method, data.path)
    endpoint = Endpoint(id=new_id("endpoint"), api_id=api.id, method=data.method, path=data.path, scope=data.scope,
                        weight=data.weight, description=data.description.strip())
    session.add(endpoint)
    touch(session, api)
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession, api: Api, *, limit: int | None, starting_after: str | None,
                         to_schema: Any) -> Page[Any]:
    return await paginate(session, select(Endpoint).where(Endpoint.api_id == api.id), Endpoint.id,
                          limit=limit, starting_after=starting_after, to_schema=to_schema)


async def get_endpoint(session: AsyncSession, api: Api, endpoint_id: str) -> Endpoint:
    endpoint = await session.scalar(select(Endpoint).where(Endpoint.id == endpoint_id, Endpoint.api_id == api.id))
    if endpoint is None:
        raise NotFound(f"No endpoint {endpoint_id!r} on this API. List them with GET /v1/apis/{api.id}/endpoints.")
    return endpoint


async def update_endpoint(session: AsyncSession, api: Api, endpoint_id: str, patch: EndpointPatch) -> Endpoint:
    endpoint = await get_endpoint(session, api, endpoint_id)
    changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not msgspec.UNSET}
    method = changes.get("method", endpoint.method)
    path = changes.get("path", endpoint.path)
    scope = changes.get("scope", endpoint.scope)
    await _check_endpoint(session, api, path, scope if "scope" in changes else None)
    await _check_unique_endpoint(session, api, method, path, exclude_id=endpoint.id)
    changed = False
    for name, value in changes.items():
        value = value.strip() if name == "description" else value
        if getattr(endpoint, name) != value:
            setattr(endpoint, name, value)
            changed = True
    if changed:
        touch(session, api)
        await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, api: Api, endpoint_id: str) -> None:
    endpoint = await get_endpoint(session, api, endpoint_id)
    await session.delete(endpoint)
    touch(session, api)
    await session.flush()
