"""Payouts over HTTP: operators' batch API (/v1/admin/payout-batches), the partner's balance and
payouts, and the operator's web page (/admin/payouts). Thin: the rules live in service.py.

The page uses the browser session (`mkt_session` cookie): logged-out visitors are redirected to
/login (and come back), signed-in users who are not operators get a 404 page (admin pages do not
reveal that they exist), and every form carries the session's CSRF token in a hidden field.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts.routes import session_principal
from marketplace.core.auth import SESSION_COOKIE, require_operator
from marketplace.core.errors import Problem, Unprocessable
from marketplace.core.pagination import Page, paginate
from marketplace.core.security import Principal, check_csrf, csrf_token
from marketplace.core.tenancy import partner_role
from payouts import service
from payouts.models import LINE_STATUSES, PayoutBatch, PayoutLine
from payouts.schemas import (
    ApproveOut,
    BalanceOut,
    BatchIn,
    BatchOut,
    BatchSummaryOut,
    HoldIn,
    LineOut,
    PartnerBalanceOut,
    PartnerPayoutOut,
    ReconciliationOut,
    TotalsOut,
)
from payouts.tasks import job_id

Cursor = Annotated[str | None, Parameter(description="The last id of the previous page (next_cursor)")]
ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof", "pyg", "rwf", "kmf", "gnf", "djf",
                          "bif", "mga", "vuv", "xpf"})
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'", "Referrer-Policy": "same-origin"}


def money(amount: int, currency: str) -> str:
    """Minor units as the major amount for the page (integers only: 123456 usd → "1,234.56")."""
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 100)
    return f"{sign}{major:,}.{minor:02d}"


async def _emails(session: AsyncSession, user_ids: list[str]) -> list[str]:
    from marketplace.accounts.models import User

    if not user_ids:
        return []
    found = dict((i, e) for i, e in await session.execute(select(User.id, User.email).where(User.id.in_(user_ids))))
    return [found.get(i, i) for i in user_ids]


def _totals(lines: list[PayoutLine]) -> list[TotalsOut]:
    return [TotalsOut(**t.__dict__) for t in service.totals(lines)]


def _line_out(line: PayoutLine, names: dict[str, str]) -> LineOut:
    return LineOut(id=line.id, batch_id=line.batch_id, partner_id=line.partner_id,
                   partner_name=names.get(line.partner_id), gross=line.gross, platform_fee=line.platform_fee,
                   amount=line.amount, currency=line.currency, status=line.status, reason=line.reason,
                   invoice_ids=list(line.invoice_ids or []), stripe_transfer_id=line.stripe_transfer_id,
                   destination=line.destination, amount_reversed=line.amount_reversed, created_at=line.created_at,
                   paid_at=line.paid_at)


async def batch_out(session: AsyncSession, batch: PayoutBatch) -> BatchOut:
    lines = await service.batch_lines(session, batch.id)
    names = await service.partner_names(session, {line.partner_id for line in lines})
    return BatchOut(id=batch.id, status=service.display_status(batch, lines), period_end=batch.period_end,
                    cutoff=batch.cutoff, created_at=batch.created_at, created_by=batch.created_by,
                    approved_by=list(batch.approved_by or []), approved_at=batch.approved_at, totals=_totals(lines),
                    lines=[_line_out(line, names) for line in lines], reconciled_at=batch.reconciled_at,
                    reconciliation=batch.reconciliation)


async def _summaries(session: AsyncSession, batches: list[PayoutBatch]) -> list[BatchSummaryOut]:
    ids = [b.id for b in batches]
    lines = (await session.scalars(select(PayoutLine).where(PayoutLine.batch_id.in_(ids)))).all() if ids else []
    by_batch: dict[str, list[PayoutLine]] = {}
    for line in lines:
        by_batch.setdefault(line.batch_id, []).append(line)
    return [BatchSummaryOut(id=b.id, status=service.display_status(b, by_batch.get(b.id, [])), period_end=b.period_end,
                            created_at=b.created_at, approved_at=b.approved_at,
                            totals=_totals(by_batch.get(b.id, []))) for b in batches]


async def _enqueue(request: Request[Any, Any, Any], line_ids: list[str]) -> int:
    for line_id in line_ids:
        await request.app.state.arq.enqueue_job("send_payout", line_id, _job_id=job_id(line_id))
    return len(line_ids)


def _csv_response(batch: PayoutBatch, body: str) -> Response[str]:
    return Response(content=body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="payout-batch-{batch.id}.csv"',
                             "Cache-Control": "no-store"})


async def _csv(session: AsyncSession, batch: PayoutBatch) -> Response[str]:
    lines = await service.batch_lines(session, batch.id)
    names = await service.partner_names(session, {line.partner_id for line in lines})
    return _csv_response(batch, service.batch_csv(batch, lines, names))


class AdminPayoutController(Controller):
    path = "/v1/admin/payout-batches"
    tags = ["admin"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createPayoutBatch",
          summary="Collect what partners are owed up to period_end into a batch pending review")
    async def create(self, data: BatchIn, principal: Principal, db_session: AsyncSession) -> BatchOut:
        require_operator(principal)
        batch = await service.create_batch(db_session, period_end=data.period_end, operator_id=principal.user_id)
        return await batch_out(db_session, batch)

    @get("/", operation_id="listPayoutBatches", summary="Payout batches, newest first, with totals")
    async def list_batches(self, principal: Principal, db_session: AsyncSession, limit: int | None = None,
                           starting_after: Cursor = None, status: str | None = None) -> Page[BatchSummaryOut]:
        require_operator(principal)
        stmt = select(PayoutBatch)
        if status:
            stmt = stmt.where(PayoutBatch.status == status)
        page = await paginate(db_session, stmt, PayoutBatch.id, limit=limit, starting_after=starting_after,
                              to_schema=lambda b: b)
        return Page(data=await _summaries(db_session, page.data), has_more=page.has_more,
                    next_cursor=page.next_cursor)

    @get("/{batch_id:str}", operation_id="getPayoutBatch",
         summary="A batch with its lines and totals (`?format=csv` or `{id}.csv`: the lines as CSV)",
         responses=None)
    async def get_batch(self, batch_id: str, principal: Principal, db_session: AsyncSession,
                        format: str | None = None) -> BatchOut | Response[str]:
        require_operator(principal)
        as_csv = format == "csv" or batch_id.endswith(".csv")
        if format not in (None, "json", "csv"):
            raise Unprocessable("format must be json or csv.", errors=[{"field": "format", "message": "json or csv"}])
        batch = await service.get_batch(db_session, batch_id.removesuffix(".csv"))
        if as_csv:
            return await _csv(db_session, batch)
        return await batch_out(db_session, batch)

    @post("/{batch_id:str}/lines/{line_id:str}/hold", status_code=HTTP_200_OK, operation_id="holdPayoutLine",
          summary="Hold a line with a reason (it is not paid until released and approved)")
    async def hold(self, batch_id: str, line_id: str, data: HoldIn, principal: Principal,
                   db_session: AsyncSession) -> LineOut:
        require_operator(principal)
        line = await service.hold_line(db_session, batch_id, line_id, reason=data.reason, operator_id=principal.user_id)
        return _line_out(line, await service.partner_names(db_session, {line.partner_id}))

    @post("/{batch_id:str}/lines/{line_id:str}/release", status_code=HTTP_200_OK, operation_id="releasePayoutLine",
          summary="Release a held line back to pending review")
    async def release(self, batch_id: str, line_id: str, principal: Principal, db_session: AsyncSession) -> LineOut:
        require_operator(principal)
        line = await service.release_line(db_session, batch_id, line_id)
        return _line_out(line, await service.partner_names(db_session, {line.partner_id}))

    @post("/{batch_id:str}/approve", status_code=HTTP_200_OK, operation_id="approvePayoutBatch",
          summary="Approve the batch: one Stripe transfer per line not held (safe to call twice)")
    async def approve(self, batch_id: str, principal: Principal, db_session: AsyncSession,
                      request: Request[Any, Any, Any]) -> ApproveOut:
        require_operator(principal)
        approval = await service.approve_batch(db_session, batch_id, operator_id=principal.user_id)
        await db_session.commit()  # the jobs must see the approved lines
        enqueued = await _enqueue(request, approval.to_send)
        return ApproveOut(batch=await batch_out(db_session, approval.batch), enqueued=enqueued,
                          awaiting_second_approval=approval.awaiting_second)

    @post("/{batch_id:str}/reconcile", status_code=HTTP_200_OK, operation_id="reconcilePayoutBatch",
          summary="Compare the batch's transfers with Stripe's (by transfer_group) and report differences")
    async def reconcile(self, batch_id: str, principal: Principal, db_session: AsyncSession) -> ReconciliationOut:
        require_operator(principal)
        batch = await service.get_batch(db_session, batch_id, lock=True)
        report = await service.reconcile_batch(db_session, batch)
        return ReconciliationOut(**report)


class PartnerPayoutController(Controller):
    path = "/v1/partners/{partner_id:str}"
    tags = ["partners"]

    @get("/balance", operation_id="partnerBalance",
         summary="Earned, pending, held, paid out and available, by currency (members only)")
    async def balance(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> PartnerBalanceOut:
        await partner_role(db_session, principal, partner_id)
        rows = await service.partner_balance(db_session, partner_id)
        return PartnerBalanceOut(partner_id=partner_id, balances=[BalanceOut(
            currency=b.currency, earned=b.earned, pending=b.pending, in_holding=b.in_holding, in_batches=b.in_batches,
            held=b.held, paid_out=b.paid_out, available=b.available) for b in rows])

    @get("/payouts", operation_id="partnerPayouts", summary="The partner's payout lines with status and reason")
    async def payouts(self, partner_id: str, principal: Principal, db_session: AsyncSession, limit: int | None = None,
                      starting_after: Cursor = None, status: str | None = None) -> Page[PartnerPayoutOut]:
        await partner_role(db_session, principal, partner_id)
        stmt = select(PayoutLine).where(PayoutLine.partner_id == partner_id)
        if status:
            if status not in LINE_STATUSES:
                raise Unprocessable(f"status must be one of {', '.join(LINE_STATUSES)}.",
                                    errors=[{"field": "status", "message": "unknown status"}])
            stmt = stmt.where(PayoutLine.status == status)
        return await paginate(db_session, stmt, PayoutLine.id, limit=limit, starting_after=starting_after,
                              to_schema=lambda ln: PartnerPayoutOut(
                                  id=ln.id, batch_id=ln.batch_id, amount=ln.amount, currency=ln.currency,
                                  gross=ln.gross, platform_fee=ln.platform_fee, status=ln.status, reason=ln.reason,
                                  stripe_transfer_id=ln.stripe_transfer_id, created_at=ln.created_at,
                                  paid_at=ln.paid_at))


# ---- the operator's page ------------------------------------------------------------------------

def _not_found_page() -> Template:
    return Template("payouts/not_found.html", status_code=404, headers=PAGE_HEADERS)


async def _operator(request: Request[Any, Any, Any], db_session: AsyncSession) -> tuple[Principal, str] | Response[Any]:
    raw = request.cookies.get(SESSION_COOKIE)
    principal = await session_principal(request, db_session) if raw else None
    if principal is None or raw is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect("/login?" + urlencode({"next": target}), status_code=303)
    if not principal.is_operator:
        return _not_found_page()
    return principal, raw


async def _form(request: Request[Any, Any, Any], raw_session: str) -> dict[str, str] | Template:
    try:
        form = await request.form()
    except Exception:
        form = {}  # type: ignore[assignment]
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not check_csrf(raw_session, values.get("csrf_token")):
        return Template("payouts/error.html", status_code=403, headers=PAGE_HEADERS, context={
            "message": "The form expired or did not come from this site (CSRF check failed). Reload the page and "
                       "try again."})
    return values


def _back(batch_id: str, notice: str, error: bool = False) -> Redirect:
    return Redirect(f"/admin/payouts/{quote(batch_id)}?" + urlencode({"error" if error else "notice": notice}),
                    status_code=303)


class PayoutPageController(Controller):
    path = "/admin/payouts"
    tags = ["pages"]
    include_in_schema = False

    @get("/")
    async def index(self, request: Request[Any, Any, Any], db_session: AsyncSession,
                    notice: str | None = None, error: str | None = None) -> Response[Any] | Template:
        who = await _operator(request, db_session)
        if not isinstance(who, tuple):
            return who
        _, raw = who
        batches = list((await db_session.scalars(select(PayoutBatch).order_by(PayoutBatch.id.desc()).limit(50))).all())
        return Template("payouts/index.html", headers=PAGE_HEADERS, context={
            "batches": await _summaries(db_session, batches), "csrf_token": csrf_token(raw), "money": money,
            "today": datetime.now(UTC).date().isoformat(), "notice": notice, "error": error})

    @post("/", status_code=HTTP_200_OK)
    async def create(self, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any] | Template:
        who = await _operator(request, db_session)
        if not isinstance(who, tuple):
            return who
        principal, raw = who
        form = await _form(request, raw)
        if isinstance(form, Template):
            return form
        try:
            day = datetime.fromisoformat(form.get("period_end", "")).date()
            period_end = datetime.combine(day, time.max, tzinfo=UTC).replace(microsecond=0)
            period_end = min(period_end, datetime.now(UTC))
            batch = await service.create_batch(db_session, period_end=period_end, operator_id=principal.user_id)
        except ValueError:
            return Redirect("/admin/payouts?" + urlencode({"error": "Enter the period end as a date (YYYY-MM-DD)."}),
                            status_code=303)
        except Problem as exc:
            await db_session.rollback()
            return Redirect("/admin/payouts?" + urlencode({"error": exc.detail}), status_code=303)
        return Redirect(f"/admin/payouts/{batch.id}?" + urlencode({"notice": "Batch created: review its lines."}),
                        status_code=303)

    @get("/{batch_id:str}")
    async def batch_page(self, batch_id: str, request: Request[Any, Any, Any], db_session: AsyncSession,
                         notice: str | None = None, error: str | None = None) -> Response[Any] | Template:
        who = await _operator(request, db_session)
        if not isinstance(who, tuple):
            return who
        _, raw = who
        batch = await db_session.get(PayoutBatch, batch_id)
        if batch is None:
            return _not_found_page()
        if batch_id.endswith(".csv"):
            return await _csv(db_session, batch)
        return Template("payouts/batch.html", headers=PAGE_HEADERS, context={
            "batch": await batch_out(db_session, batch), "csrf_token": csrf_token(raw), "notice": notice,
            "error": error, "money": money, "approvers": await _emails(db_session, list(batch.approved_by or []))})

    @get("/{batch_id:str}/export.csv")
    async def export(self, batch_id: str, request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
        who = await _operator(request, db_session)
        if not isinstance(who, tuple):
            return who
        batch = await db_session.get(PayoutBatch, batch_id)
        if batch is None:
            return _not_found_page()
        return await _csv(db_session, batch)

    async def _act(self, request: Request[Any, Any, Any], db_session: AsyncSession, batch_id: str,
                   action: str, line_id: str | None = None) -> Response[Any] | Template:
        who = await _operator(request, db_session)
        if not isinstance(who, tuple):
            return who
        principal, raw = who
        form = await _form(request, raw)
        if isinstance(form, Template):
            return form
        try:
            if action == "hold" and line_id:
                await service.hold_line(db_session, batch_id, line_id, reason=form.get("reason", ""),
                                        operator_id=principal.user_id)
                notice = "Line held."
            elif action == "release" and line_id:
                await service.release_line(db_session, batch_id, line_id)
                notice = "Line released: it is pending review again."
            elif action == "approve":
                approval = await service.approve_batch(db_session, batch_id, operator_id=principal.user_id)
                await db_session.commit()
                sent = await _enqueue(request, approval.to_send)
                notice = ("Approved by you; a second operator must approve this batch too."
                          if approval.awaiting_second else f"Batch approved: {sent} transfer(s) queued.")
            else:
                batch = await service.get_batch(db_session, batch_id, lock=True)
                report = await service.reconcile_batch(db_session, batch)
                notice = ("Reconciled: no differences with Stripe." if report["ok"]
                          else f"Reconciled: {len(report['differences'])} difference(s) with Stripe.")
        except Problem as exc:
            await db_session.rollback()
            if exc.status == 404:
                return _not_found_page()
            return _back(batch_id, exc.detail, error=True)
        return _back(batch_id, notice)

    @post("/{batch_id:str}/lines/{line_id:str}/hold", status_code=HTTP_200_OK)
    async def hold(self, batch_id: str, line_id: str, request: Request[Any, Any, Any],
                   db_session: AsyncSession) -> Response[Any] | Template:
        return await self._act(request, db_session, batch_id, "hold", line_id)

    @post("/{batch_id:str}/lines/{line_id:str}/release", status_code=HTTP_200_OK)
    async def release(self, batch_id: str, line_id: str, request: Request[Any, Any, Any],
                      db_session: AsyncSession) -> Response[Any] | Template:
        return await self._act(request, db_session, batch_id, "release", line_id)

    @post("/{batch_id:str}/approve", status_code=HTTP_200_OK)
    async def approve(self, batch_id: str, request: Request[Any, Any, Any],
                      db_session: AsyncSession) -> Response[Any] | Template:
        return await self._act(request, db_session, batch_id, "approve")

    @post("/{batch_id:str}/reconcile", status_code=HTTP_200_OK)
    async def reconcile(self, batch_id: str, request: Request[Any, Any, Any],
                        db_session: AsyncSession) -> Response[Any] | Template:
        return await self._act(request, db_session, batch_id, "reconcile")


ROUTES = [AdminPayoutController, PartnerPayoutController, PayoutPageController]
