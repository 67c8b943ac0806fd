"""The public catalog: published APIs of active partners, searched with PostgreSQL full text.

Listing order: without `q`, most recently published first; with `q`, best match first (`ts_rank`
over `Api.search`, which weighs the name above the category above the description). Ties go to
the newer id. The cursor (`starting_after`) is the id of the last item of the page: the next page
continues below that item's (sort key, id), so pages never repeat or skip an API while the
catalog does not change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from marketplace.core.errors import NotFound
from marketplace.core.pagination import Page, checked_cursor, clamp_limit
from partners.models import Partner
from partners.publishing.models import Api, Endpoint, Plan, PlanVersion, Scope


def _visible(stmt: Select[Any]) -> Select[Any]:
    """Published APIs of active partners."""
    return stmt.join(Partner, Partner.id == Api.partner_id).where(Api.status == "published",
                                                                    Partner.status == "active")


def _listable() -> Select[Any]:
    # The search vector and the proxy secret are never shown: don't fetch them.
    return _visible(select(Api, Partner)).options(defer(Api.search), defer(Api.proxy_secret_encrypted))


async def search(session: AsyncSession, *, q: str | None, category: str | None, tag: str | None,
                 limit: int | None, starting_after: str | None) -> Page[tuple[Api, Partner]]:
    stmt = _listable()
    if category:
        stmt = stmt.where(Api.category == category.strip().lower())
    if tag:
        stmt = stmt.where(Api.tags.contains([tag.strip().lower()]))
    size = clamp_limit(limit)
    after = aliased(Api)  # the cursor's row, to continue below its sort key
    if q and q.strip():
        query = func.websearch_to_tsquery("english", q.strip())
        stmt = stmt.where(Api.search.op("@@")(query))
        key, after_key = func.ts_rank(Api.search, query), func.ts_rank(after.search, query)
    else:
        key, after_key = Api.published_at, after.published_at
    if checked_cursor(starting_after):
        cursor_key = select(after_key).where(after.id == starting_after).scalar_subquery()
        stmt = stmt.where(tuple_(key, Api.id) < tuple_(cursor_key, starting_after))
    stmt = stmt.order_by(key.desc(), Api.id.desc())
    rows = [(api, partner) for api, partner in (await session.execute(stmt.limit(size + 1))).all()]
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(data=rows, has_more=has_more, next_cursor=rows[-1][0].id if has_more and rows else None)


async def get_published(session: AsyncSession, slug: str) -> tuple[Api, Partner]:
    row = (await session.execute(_listable().where(Api.slug == slug))).first()
    if row is None:
        raise NotFound(f"No published API {slug!r}. Search the catalog with GET /v1/catalog/apis?q=…")
    return row[0], row[1]


async def details(session: AsyncSession, api: Api) -> tuple[list[tuple[Plan, PlanVersion]], list[Endpoint], list[Scope]]:
    plans = (await session.execute(
        select(Plan, PlanVersion)
        .join(PlanVersion, (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version))
        .where(Plan.api_id == api.id, Plan.status == "active")
        .order_by(PlanVersion.monthly_fee, Plan.id)
    )).tuples().all()
    endpoints = (await session.scalars(select(Endpoint).where(Endpoint.api_id == api.id)
                                       .order_by(Endpoint.path, Endpoint.method))).all()
    scopes = (await session.scalars(select(Scope).where(Scope.api_id == api.id).order_by(Scope.name))).all()
    return list(plans), list(endpoints), list(scopes)


async def categories(session: AsyncSession) -> list[tuple[str, int]]:
    count = func.count().label("count")
    rows = await session.execute(
        _visible(select(Api.category, count)).where(Api.category.is_not(None))
        .group_by(Api.category).order_by(count.desc(), Api.category)
    )
    return [(name, int(n)) for name, n in rows.tuples()]


async def plan_summaries(session: AsyncSession, api_ids: list[str]) -> dict[str, tuple[bool, int | None, str]]:
    """Per API, over its active plans: (a free plan exists, the lowest monthly fee of the other
    plans or None, that fee's currency), for catalog listings ("Free plan · paid from USD 49.00")."""
    if not api_ids:
        return {}
    rows = await session.execute(
        select(Plan.api_id, PlanVersion.monthly_fee, PlanVersion.currency, PlanVersion.unit_pricing)
        .join(PlanVersion, (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version))
        .where(Plan.api_id.in_(api_ids), Plan.status == "active")
        .order_by(Plan.api_id, PlanVersion.monthly_fee))
    out: dict[str, tuple[bool, int | None, str]] = {}
    for api_id, fee, currency, pricing in rows.tuples():
        free, lowest, cur = out.get(api_id, (False, None, currency))
        if not fee and not pricing:
            free = True
        elif lowest is None:
            lowest, cur = int(fee), currency
        out[api_id] = (free, lowest, cur)
    return out
