"""The portal's pages. Thin: each handler reads the session, checks CSRF on forms, calls the
domains' services (through `portal.service` for read models) and renders a template. Service
errors become friendly HTML pages (never problem+json, never a 500)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts import service as accounts
from marketplace.billing import payments
from marketplace.catalog import service as catalog
from marketplace.core.auth import SESSION_COOKIE
from marketplace.core.errors import NotFound, PaymentRequired, Problem
from marketplace.core.pagination import checked_cursor
from marketplace.core.security import constant_time_equals
from marketplace.portal import metrics, service
from marketplace.portal.pages import (
    PortalPages,
    Viewer,
    checked_id,
    clean,
    error_page,
    login_redirect,
    page,
    safe_next,
    submitted_form,
    viewer_of,
)
from marketplace.portal.snippets import snippets
from marketplace.settings import get_settings
from marketplace.subscriptions import service as subscriptions
from oauth import service as oauth
from partners import service as partners
from partners.connect import service as connect

MAX_UNITS = 10**12
NOTICES = {
    "subscribed": "Subscribed. Create an API key below to start calling the API.",
    "key-revoked": "The key is revoked; the gateway refuses it within a second.",
    "grant-revoked": "Access revoked: the app's tokens stop working at once.",
    "app-deleted": "The app is deleted and its tokens are revoked.",
    "canceled": "The subscription will end at the end of the current period.",
    "budget-saved": "Budget saved. You will get alerts at 50, 80 and 100 percent of it.",
}



class CatalogPages(PortalPages):
    path = "/catalog"

    @get("/")
    async def catalog(self, request: Request[Any, Any, Any], db_session: AsyncSession, q: str | None = None,
                      category: str | None = None, tag: str | None = None,
                      starting_after: str | None = None) -> Template:
        viewer = await viewer_of(request, db_session)
        q, category, tag = (clean(v) for v in (q, category, tag))
        try:
            cursor = checked_cursor(starting_after or None)
        except Problem:
            cursor = None
        results = await catalog.search(db_session, q=q, category=category, tag=tag, limit=12, starting_after=cursor)
        prices = await catalog.plan_summaries(db_session, [api.id for api, _ in results.data])
        return page("catalog.html", viewer, results=results.data, prices=prices, has_more=results.has_more,
                    next_cursor=results.next_cursor, q=q or "", category=category or "", tag=tag or "",
                    categories=await catalog.categories(db_session), paged=bool(cursor))

    @get("/{slug:str}")
    async def api_page(self, request: Request[Any, Any, Any], db_session: AsyncSession, slug: str,
                       units: str | None = None) -> Template:
        return await self._api_page(request, db_session, slug, units)

    async def _api_page(self, request: Request[Any, Any, Any], db_session: AsyncSession, slug: str,
                        units: str | None, *, message: str | None = None, needs_billing: bool = False,
                        status_code: int = HTTP_200_OK) -> Template:
        viewer = await viewer_of(request, db_session)
        try:
            api, partner = await catalog.get_published(db_session, slug)
        except NotFound:
            return error_page(404, "No such API", f"There is no published API called {slug!r}. "
                              "Search the catalog for another one.", viewer)
        plans, endpoints, scopes = await catalog.details(db_session, api)
        units_value, units_error = None, None
        if units not in (None, ""):
            try:
                units_value = int(str(units).replace(",", "").replace("_", "").strip())
                if not 0 <= units_value <= MAX_UNITS:
                    raise ValueError
            except ValueError:
                units_value, units_error = None, f"Enter a whole number of units between 0 and {MAX_UNITS:,}."
        quotes = [(plan, version, service.plan_quote(version, units_value)) for plan, version in plans] \
            if units_value is not None else []
        groups: dict[str, list[Any]] = {}
        for ep in endpoints:
            groups.setdefault(ep.scope or "", []).append(ep)
        scope_text = {s.name: s.description for s in scopes}
        base = get_settings().base_url
        code = {ep.id: snippets(base, api.slug, ep.method, ep.path) for ep in endpoints}
        subscription = None
        if viewer is not None:
            live = await subscriptions.list_with_plans(db_session, viewer.principal.user_id)
            subscription = next((s for s, _, a in live if a.id == api.id), None)
        return page("api.html", viewer, status_code=status_code, api=api, partner=partner, plans=plans,
                    groups=sorted(groups.items()), scope_text=scope_text, code=code, units=units or "",
                    units_value=units_value, units_error=units_error, quotes=quotes,
                    price_lines=service.unit_price, message=message, needs_billing=needs_billing,
                    subscription=subscription, gateway=f"{base.rstrip('/')}/gateway/{api.slug}")

    @post("/{slug:str}/subscribe", status_code=HTTP_200_OK)
    async def subscribe(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                        slug: str) -> Template | Redirect:
        got = await submitted_form(request, db_session, f"/catalog/{slug}")
        if not isinstance(got, tuple):
            return got
        viewer, form = got
        try:
            sub, _ = await subscriptions.create_subscription(db_session, viewer.principal.user_id,
                                                             checked_id(form.get("plan_id"), "plan"))
        except PaymentRequired:
            return await self._api_page(request, db_session, slug, None, needs_billing=True, status_code=402,
                                        message="This plan is paid and you have no payment method on file yet.")
        except Problem as exc:
            return await self._api_page(request, db_session, slug, None, message=exc.detail,
                                        status_code=exc.status)
        return Redirect(f"/dashboard?notice=subscribed#sub-{sub.id}", status_code=303)


class DashboardPages(PortalPages):
    path = "/dashboard"

    @get("/")
    async def dashboard(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                        notice: str | None = None) -> Template | Redirect:
        viewer = await viewer_of(request, db_session)
        if viewer is None:
            return login_redirect("/dashboard")
        return await self._render(db_session, viewer, notice=NOTICES.get(notice or ""))

    async def _render(self, db_session: AsyncSession, viewer: Viewer, *, notice: str | None = None,
                      new_key: Any = None, error: str | None = None, status_code: int = HTTP_200_OK) -> Template:
        board = await service.dashboard(db_session, viewer.principal)
        user = await accounts.get_user(db_session, viewer.principal.user_id)
        return page("dashboard.html", viewer, status_code=status_code, board=board, user=user, notice=notice,
                    new_key=new_key, error=error, payments=get_settings().payments_enabled)

    async def _form(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> tuple[Viewer, dict[str, str]] | Template | Redirect:
        return await submitted_form(request, db_session, "/dashboard")

    @post("/api-keys", status_code=HTTP_200_OK)
    async def create_key(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        viewer, form = got
        name = form.get("name", "").strip()[:200] or "Key"
        try:
            key, token = await subscriptions.create_key(db_session, viewer.principal.user_id,
                                                        checked_id(form.get("subscription_id"), "subscription"), name)
        except Problem as exc:
            return await self._render(db_session, viewer, error=exc.detail, status_code=exc.status)
        # Shown once, on this page only (never stored in clear, never in a redirect URL).
        return await self._render(db_session, viewer, new_key={"id": key.id, "name": key.name, "value": token.value},
                                  status_code=201)

    @post("/api-keys/{key_id:str}/revoke", status_code=HTTP_200_OK)
    async def revoke_key(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                         key_id: str) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        await subscriptions.revoke_key(db_session, got[0].principal.user_id, checked_id(key_id, "API key"))
        return Redirect("/dashboard?notice=key-revoked#keys", status_code=303)

    @post("/subscriptions/{subscription_id:str}/cancel", status_code=HTTP_200_OK)
    async def cancel(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                     subscription_id: str) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        await subscriptions.cancel(db_session, got[0].principal.user_id, checked_id(subscription_id, "subscription"),
                                   now=False)
        return Redirect("/dashboard?notice=canceled", status_code=303)

    @post("/subscriptions/{subscription_id:str}/budget", status_code=HTTP_200_OK)
    async def budget(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                     subscription_id: str) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        viewer, form = got
        try:
            await service.set_budget(db_session, request.app.state.redis, viewer.principal.user_id,
                                     checked_id(subscription_id, "subscription"), amount_text=form.get("amount", ""),
                                     hard_cap=form.get("hard_cap") == "on")
        except Problem as exc:
            if exc.status == 404:
                raise
            return await self._render(db_session, viewer, error=exc.detail, status_code=exc.status)
        return Redirect(f"/dashboard?notice=budget-saved#sub-{subscription_id}", status_code=303)

    @post("/billing/setup", status_code=HTTP_200_OK)
    async def billing_setup(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        viewer = got[0]
        try:
            url = await payments.setup_checkout_url(db_session, viewer.principal.user_id, viewer.principal.email)
        except Problem as exc:
            return await self._render(db_session, viewer, error=exc.detail, status_code=exc.status)
        return Redirect(url, status_code=303)

    @post("/grants/{grant_id:str}/revoke", status_code=HTTP_200_OK)
    async def revoke_grant(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                           grant_id: str) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        await oauth.revoke_grant(db_session, request.app.state.redis, got[0].principal.user_id, grant_id)
        return Redirect("/dashboard?notice=grant-revoked#apps", status_code=303)

    @post("/apps/{app_id:str}/delete", status_code=HTTP_200_OK)
    async def delete_app(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                         app_id: str) -> Template | Redirect:
        got = await self._form(request, db_session)
        if not isinstance(got, tuple):
            return got
        await oauth.delete_app(db_session, request.app.state.redis, got[0].principal.user_id, app_id)
        return Redirect("/dashboard?notice=app-deleted#apps", status_code=303)


class PartnerPages(PortalPages):
    path = "/partner/{partner_id:str}"

    @get("/")
    async def partner_page(self, request: Request[Any, Any, Any], db_session: AsyncSession, partner_id: str,
                           connect: str | None = None) -> Template | Redirect:
        viewer = await viewer_of(request, db_session)
        if viewer is None:
            return login_redirect(f"/partner/{partner_id}")
        return await self._render(db_session, viewer, partner_id,
                                  notice="Welcome back from Stripe. Your Connect status updates when Stripe "
                                         "tells us (usually within a minute)." if connect == "return" else None)

    async def _render(self, db_session: AsyncSession, viewer: Viewer, partner_id: str, *, notice: str | None = None,
                      error: str | None = None, status_code: int = HTTP_200_OK) -> Template:
        try:
            board = await service.partner_dashboard(db_session, viewer.principal, checked_id(partner_id, "partner"))
        except NotFound:
            return error_page(404, "Not found", "There is no such partner page, or you are not one of its "
                              "members. Your partners are listed on your dashboard.", viewer)
        return page("partner.html", viewer, status_code=status_code, board=board, notice=notice, error=error)

    @post("/connect", status_code=HTTP_200_OK)
    async def connect_onboarding(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                                 partner_id: str) -> Template | Redirect:
        got = await submitted_form(request, db_session, f"/partner/{partner_id}")
        if not isinstance(got, tuple):
            return got
        viewer, _ = got
        try:
            partner, _ = await partners.require_member(db_session, viewer.principal, checked_id(partner_id, "partner"),
                                                       ("owner", "admin"))
            url, _, _ = await connect.onboarding_link(db_session, partner)
        except NotFound:
            return await self._render(db_session, viewer, partner_id, status_code=404,
                                      error="Only the partner's owners and admins can set up payouts.")
        except Problem as exc:
            return await self._render(db_session, viewer, partner_id, error=exc.detail, status_code=exc.status)
        return Redirect(url, status_code=303)


class StatusPage(PortalPages):
    @get("/status")
    async def status(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Template:
        viewer = await viewer_of(request, db_session)
        return page("status.html", viewer, rows=await service.status_rows(db_session))


class SignupPage(PortalPages):
    """A sign-up form beside /login (the API's POST /v1/signup, then a browser session)."""

    @get("/signup")
    async def signup_page(self, next: str | None = None) -> Template:
        return page("signup.html", None, next=safe_next(next), error=None, values={})

    @post("/signup", status_code=HTTP_200_OK)
    async def signup(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Template | Redirect:
        form = {k: str(v) for k, v in (await request.form()).items()}
        values = {"email": form.get("email", ""), "name": form.get("name", "")}
        next_url = safe_next(form.get("next"))
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host"):
            return page("signup.html", None, status_code=403, next=next_url, values=values,
                        error="Cross-site sign-up refused.")
        password = form.get("password", "")
        name = values["name"].strip()
        if len(password) < 8 or not name or "@" not in values["email"]:
            return page("signup.html", None, status_code=422, next=next_url, values=values,
                        error="Enter your name, an email address and a password of at least 8 characters.")
        try:
            async with db_session.begin_nested():
                await accounts.signup(db_session, email=values["email"], password=password, name=name)
            _user, token, row = await accounts.login(db_session, email=values["email"], password=password,
                                                    kind=accounts.SESSION_KIND)
        except Problem as exc:
            return page("signup.html", None, status_code=exc.status, next=next_url, values=values, error=exc.detail)
        response = Redirect(next_url, status_code=303)
        response.set_cookie(SESSION_COOKIE, token.value, httponly=True, samesite="lax", path="/",
                            secure=request.url.scheme == "https", expires=row.expires_at)
        return response


class MetricsEndpoint(Controller):
    include_in_schema = False

    @get("/metrics")
    async def metrics(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[bytes]:
        token = get_settings().metrics_token
        if not token:
            raise NotFound("No route for GET /metrics. Set METRICS_TOKEN to enable it.")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not constant_time_equals(given.strip(), token):
            return Response(b"Send Authorization: Bearer <METRICS_TOKEN>.\n", status_code=401,
                            media_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
        values = await service.operational_gauges(db_session, request.app.state.redis)
        body = metrics.process_metrics() + metrics.gauges_text(values)
        return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


ROUTES = [CatalogPages, DashboardPages, PartnerPages, StatusPage, SignupPage, MetricsEndpoint]
