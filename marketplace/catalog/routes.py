"""The public catalog over HTTP: no authentication; only published APIs are visible."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.catalog import service
from marketplace.catalog.schemas import (
    CatalogApiDetailOut,
    CatalogApiOut,
    CatalogEndpointOut,
    CatalogPartnerOut,
    CatalogPlanOut,
    CatalogScopeOut,
    CategoryOut,
)
from marketplace.core.pagination import Page
from partners.models import Partner
from partners.publishing.models import Api, Plan, PlanVersion
from partners.publishing.schemas import Quota, RateLimit


def _listing(api: Api, partner: Partner) -> CatalogApiOut:
    return CatalogApiOut(id=api.id, slug=api.slug, name=api.name, description=api.description, category=api.category,
                         tags=list(api.tags or []), partner=CatalogPartnerOut(id=partner.id, name=partner.name),
                         published_at=api.published_at, gateway_path=f"/gateway/{api.slug}")


def _plan(plan: Plan, version: PlanVersion) -> CatalogPlanOut:
    return CatalogPlanOut(
        id=plan.id, version=version.version, name=version.name, currency=version.currency,
        monthly_fee=version.monthly_fee, included_units=version.included_units, unit_pricing=version.unit_pricing,
        quota=Quota(limit=version.quota_limit, hard=version.quota_hard) if version.quota_limit is not None else None,
        rate_limit=(RateLimit(per_second=version.rate_per_second, per_minute=version.rate_per_minute)
                    if version.rate_per_second is not None or version.rate_per_minute is not None else None),
        scopes=list(version.scopes or []), free=version.monthly_fee == 0 and version.unit_pricing is None,
    )


class CatalogController(Controller):
    path = "/v1/catalog"
    tags = ["catalog"]
    security = [{}]  # public: no token needed

    @get("/apis", operation_id="searchCatalog",
         summary="Published APIs: full-text search, category and tag filters, cursor pages",
         description="Without `q`, most recently published first. With `q` (web-search syntax: words, \"quoted phrases\", "
                     "`or`, `-excluded`), best match first. Page on with `starting_after=<next_cursor>`.")
    async def search(self, db_session: AsyncSession,
                     q: Annotated[str | None, Parameter(max_length=200, description="Search words")] = None,
                     category: Annotated[str | None, Parameter(max_length=64)] = None,
                     tag: Annotated[str | None, Parameter(max_length=64)] = None,
                     limit: Annotated[int | None, Parameter(ge=1, le=100)] = None,
                     starting_after: str | None = None) -> Page[CatalogApiOut]:
        page = await service.search(db_session, q=q, category=category, tag=tag, limit=limit,
                                    starting_after=starting_after)
        return Page(data=[_listing(api, partner) for api, partner in page.data], has_more=page.has_more,
                    next_cursor=page.next_cursor)

    @get("/apis/{slug:str}", operation_id="getCatalogApi",
         summary="A published API with its partner, plans (current terms), endpoints and scopes")
    async def get_api(self, slug: str, db_session: AsyncSession) -> CatalogApiDetailOut:
        api, partner = await service.get_published(db_session, slug)
        plans, endpoints, scopes = await service.details(db_session, api)
        listing = _listing(api, partner)
        return CatalogApiDetailOut(
            id=listing.id, slug=listing.slug, name=listing.name, description=listing.description,
            category=listing.category, tags=listing.tags, partner=listing.partner, published_at=listing.published_at,
            gateway_path=listing.gateway_path,
            plans=[_plan(plan, version) for plan, version in plans],
            endpoints=[CatalogEndpointOut(id=e.id, method=e.method, path=e.path, scope=e.scope, weight=e.weight,
                                          description=e.description) for e in endpoints],
            scopes=[CatalogScopeOut(name=s.name, description=s.description) for s in scopes],
        )

    @get("/categories", operation_id="listCatalogCategories", summary="Categories of published APIs, with counts")
    async def categories(self, db_session: AsyncSession) -> list[CategoryOut]:
        return [CategoryOut(name=name, count=count) for name, count in await service.categories(db_session)]


ROUTES = [CatalogController]
