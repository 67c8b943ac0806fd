"""What every page shares: the logged-in viewer and its CSRF token, rendering, the HTML error
pages that replace problem+json, id and form checks, and the base controller with those handlers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts.routes import session_principal
from marketplace.core.auth import SESSION_COOKIE
from marketplace.core.errors import NotFound, Problem
from marketplace.core.security import Principal, check_csrf, csrf_token
from marketplace.portal import service
from partners import service as partners

ID = re.compile(r"[a-z]{1,8}_[0-9a-z]{1,40}")
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}


@dataclass(frozen=True)
class Viewer:
    """The logged-in user of a page, with the CSRF token for its forms."""

    principal: Principal
    csrf: str
    session_token: str
    partners: tuple[tuple[str, str], ...] = ()  # (partner id, name) of the partners they belong to


async def viewer_of(request: Request[Any, Any, Any], db_session: AsyncSession) -> Viewer | None:
    principal = await session_principal(request, db_session)
    raw = request.cookies.get(SESSION_COOKIE)
    if principal is None or not raw:
        return None
    memberships = await partners.list_partners(db_session, principal)
    return Viewer(principal, csrf_token(raw), raw, tuple((p.id, p.name) for p, _ in memberships))


def page(name: str, viewer: Viewer | None, status_code: int = HTTP_200_OK, **context: Any) -> Template:
    return Template(f"portal/{name}", context={"viewer": viewer, "money": service.money, **context},
                    status_code=status_code, headers=PAGE_HEADERS)


def error_page(status: int, title: str, detail: str, viewer: Viewer | None = None) -> Template:
    return page("error.html", viewer, status_code=status, title=title, detail=detail)


def checked_id(value: str | None, kind: str) -> str:
    """An id from a form or path must look like one of ours before it reaches a query."""
    if not value or not ID.fullmatch(value):
        raise NotFound(f"There is no such {kind}. Reload the page and try again.")
    return value


def login_redirect(path: str) -> Redirect:
    return Redirect(f"/login?next={quote(path, safe='/')}", status_code=303)


def problem_page(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return error_page(exc.status, exc.title, exc.detail)


def http_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        detail = "Something went wrong on our side. Try again in a minute."
    elif exc.status_code == 404:
        detail = "There is no such page. Start from the catalog."
    else:
        detail = "This request could not be handled. Check what you entered and try again."
    return error_page(exc.status_code, "Something is not right", detail)


async def checked_form(request: Request[Any, Any, Any], viewer: Viewer) -> dict[str, str] | Template:
    """The submitted form, or an error page when its CSRF token is missing or wrong."""
    form = await request.form()
    data = {k: str(v) for k, v in form.items()}
    if not check_csrf(viewer.session_token, data.get("csrf_token")):
        return error_page(403, "This form has expired",
                          "The form was not sent from this site or your session changed. Go back, reload the page "
                          "and submit it again.", viewer)
    return data


async def submitted_form(request: Request[Any, Any, Any], db_session: AsyncSession,
                         return_to: str) -> tuple[Viewer, dict[str, str]] | Template | Redirect:
    """Every form POST starts here: the logged-in viewer and their CSRF-checked form, or the page to
    answer instead (the login redirect back to `return_to`, or the expired-form page)."""
    viewer = await viewer_of(request, db_session)
    if viewer is None:
        return login_redirect(return_to)
    form = await checked_form(request, viewer)
    return form if isinstance(form, Template) else (viewer, form)


class PortalPages(Controller):
    """Base of every page controller: out of the OpenAPI document, errors as HTML pages."""

    include_in_schema = False
    exception_handlers = {Problem: problem_page, HTTPException: http_page}


def clean(value: str | None) -> str | None:
    """A search field as PostgreSQL accepts it: no control characters (NUL would fail), 200 chars."""
    text = "".join(ch for ch in (value or "") if ch.isprintable()).strip()[:200]
    return text or None


def safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    return target
