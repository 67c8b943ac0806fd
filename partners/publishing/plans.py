"""Plans: validating their terms, and versioning them.

A plan's terms live in `PlanVersion` rows. Editing a plan whose current version no subscription
points at changes that version in place; editing one that has subscribers (any subscription row,
canceled ones included, since invoices refer to it) adds a new version and makes it current, so
existing subscribers keep the terms they signed up for. Archiving hides the plan from new
subscribers; existing ones keep it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.errors import Conflict, NotFound, Unprocessable
from marketplace.core.ids import new_id
from marketplace.core.money import normalize_currency, parse_decimal_amount
from marketplace.core.pagination import Page
from marketplace.core.security import Principal
from marketplace.subscriptions.models import Subscription
from partners.publishing.models import Api, Plan, PlanVersion
from partners.publishing.schemas import PlanIn, PlanPatch, Quota, RateLimit, UnitPricing
from partners.publishing.service import field_error, load_api, scope_names, touch

MAX_TIERS = 50
MAX_UNIT_AMOUNT = 10**12


def _version_id() -> str:
    """Plan versions are not addressed on their own; their ids read `plv_…` (a ULID, like every id)."""
    return "plv_" + new_id("plan").split("_", 1)[1]


def _amount(value: str | None, field: str, errors: list[dict[str, str]]) -> str | None:
    if value is None:
        errors.append(field_error(field, "is required for this pricing model"))
        return None
    try:
        amount = parse_decimal_amount(value.strip())
    except ValueError as exc:
        errors.append(field_error(field, str(exc)))
        return None
    if amount > MAX_UNIT_AMOUNT:
        errors.append(field_error(field, f"must be at most {MAX_UNIT_AMOUNT} minor units"))
        return None
    return format(amount, "f")


def normalize_unit_pricing(pricing: UnitPricing | None, errors: list[dict[str, str]]) -> dict[str, Any] | None:
    """The stored form of `unit_pricing` (see `UnitPricing`), with problems appended to `errors`."""
    if pricing is None:
        return None
    model = pricing.model
    out: dict[str, Any] = {"model": model}
    if model in ("per_unit", "package"):
        if pricing.tiers is not None:
            errors.append(field_error("unit_pricing.tiers", f"is not used by the {model} model; use unit_amount"))
        out["unit_amount"] = _amount(pricing.unit_amount, "unit_pricing.unit_amount", errors)
        if model == "package":
            if pricing.package_size is None:
                errors.append(field_error("unit_pricing.package_size", "is required for the package model"))
            out["package_size"] = pricing.package_size
        elif pricing.package_size is not None:
            errors.append(field_error("unit_pricing.package_size", "is only used by the package model"))
        return out
    # graduated / volume
    if pricing.unit_amount is not None or pricing.package_size is not None:
        errors.append(field_error("unit_pricing", f"the {model} model prices units by tiers; "
                                                  "remove unit_amount and package_size"))
    tiers = pricing.tiers or []
    if not tiers:
        errors.append(field_error("unit_pricing.tiers", f"the {model} model needs at least one tier"))
        return out
    if len(tiers) > MAX_TIERS:
        errors.append(field_error("unit_pricing.tiers", f"at most {MAX_TIERS} tiers"))
    out_tiers = []
    previous = 0
    for index, tier in enumerate(tiers):
        field = f"unit_pricing.tiers[{index}]"
        last = index == len(tiers) - 1
        if tier.up_to is None and not last:
            errors.append(field_error(f"{field}.up_to", "only the last tier may have up_to: null"))
        elif tier.up_to is not None and last:
            errors.append(field_error(f"{field}.up_to", "the last tier must have up_to: null (it has no upper bound)"))
        elif tier.up_to is not None:
            if tier.up_to <= previous:
                errors.append(field_error(f"{field}.up_to", f"tiers must ascend: {tier.up_to} is not above "
                                                            f"the previous bound {previous}"))
            previous = max(previous, tier.up_to)
        out_tiers.append({"up_to": tier.up_to, "unit_amount": _amount(tier.unit_amount, f"{field}.unit_amount", errors)})
    out["tiers"] = out_tiers
    return out


async def validate_terms(session: AsyncSession, api: Api, data: PlanIn) -> dict[str, Any]:
    """The PlanVersion columns for these terms; 422 listing every problem."""
    errors: list[dict[str, str]] = []
    name = data.name.strip()
    if not name:
        errors.append(field_error("name", "must not be blank"))
    try:
        currency = normalize_currency(data.currency)
    except ValueError as exc:
        currency = data.currency
        errors.append(field_error("currency", str(exc)))
    unit_pricing = normalize_unit_pricing(data.unit_pricing, errors)
    known = await scope_names(session, api.id)
    scopes = list(dict.fromkeys(data.scopes))
    for index, scope in enumerate(scopes):
        if scope not in known:
            errors.append(field_error(f"scopes[{index}]", f"the API has no scope {scope!r}; create it with "
                                                          f"POST /v1/apis/{api.id}/scopes first"))
    if errors:
        raise Unprocessable("The plan is not valid. Fix: " + "; ".join(f"{e['field']} {e['message']}" for e in errors)
                            + ".", errors=errors, slug="invalid-plan")
    return {
        "name": name, "currency": currency, "monthly_fee": data.monthly_fee, "included_units": data.included_units,
        "unit_pricing": unit_pricing,
        "quota_limit": data.quota.limit if data.quota else None,
        "quota_hard": bool(data.quota and data.quota.hard),
        "rate_per_second": data.rate_limit.per_second if data.rate_limit else None,
        "rate_per_minute": data.rate_limit.per_minute if data.rate_limit else None,
        "scopes": scopes,
    }


def terms_of(version: PlanVersion) -> PlanIn:
    """A version's terms in the input shape (to merge a PATCH into)."""
    return PlanIn(
        name=version.name, currency=version.currency, monthly_fee=version.monthly_fee,
        included_units=version.included_units,
        unit_pricing=msgspec.convert(version.unit_pricing, UnitPricing) if version.unit_pricing else None,
        quota=Quota(limit=version.quota_limit, hard=version.quota_hard) if version.quota_limit is not None else None,
        rate_limit=(RateLimit(per_second=version.rate_per_second, per_minute=version.rate_per_minute)
                    if version.rate_per_second is not None or version.rate_per_minute is not None else None),
        scopes=list(version.scopes or []),
    )


async def create_plan(session: AsyncSession, api: Api, data: PlanIn) -> tuple[Plan, PlanVersion]:
    terms = await validate_terms(session, api, data)
    plan = Plan(id=new_id("plan"), api_id=api.id, status="active", current_version=1)
    session.add(plan)
    await session.flush()
    version = PlanVersion(id=_version_id(), plan_id=plan.id, version=1, **terms)
    session.add(version)
    touch(session, api)
    await session.flush()
    return plan, version


async def current_version(session: AsyncSession, plan: Plan) -> PlanVersion:
    version = await session.scalar(select(PlanVersion).where(PlanVersion.plan_id == plan.id,
                                                             PlanVersion.version == plan.current_version))
    assert version is not None, plan.id
    return version


async def list_plans(session: AsyncSession, api: Api, *, status: str | None, limit: int | None,
                     starting_after: str | None, to_schema: Any) -> Page[Any]:
    stmt = select(Plan, PlanVersion).join(PlanVersion, (PlanVersion.plan_id == Plan.id)
                                          & (PlanVersion.version == Plan.current_version)).where(Plan.api_id == api.id)
    if status:
        stmt = stmt.where(Plan.status == status)
    if starting_after:
        stmt = stmt.where(Plan.id < starting_after)
    size = max(1, min(100, limit or 20))
    rows = (await session.execute(stmt.order_by(Plan.id.desc()).limit(size + 1))).all()
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(data=[to_schema(plan, version) for plan, version in rows], has_more=has_more,
                next_cursor=rows[-1][0].id if has_more and rows else None)


async def load_plan(session: AsyncSession, principal: Principal, plan_id: str) -> tuple[Api, Plan]:
    """The plan and its API if the caller is a member of the API's partner; 404 otherwise."""
    plan = await session.scalar(select(Plan).where(Plan.id == plan_id).with_for_update())
    missing = NotFound(f"No plan {plan_id!r} on your partners' APIs. List them with GET /v1/apis/{{api_id}}/plans.")
    if plan is None:
        raise missing
    try:
        api = await load_api(session, principal, plan.api_id, for_update=True)
    except NotFound:
        raise missing from None
    return api, plan


async def subscriber_count(session: AsyncSession, version: PlanVersion) -> int:
    return int(await session.scalar(select(func.count()).select_from(Subscription)
                                    .where(Subscription.plan_version_id == version.id)) or 0)


async def update_plan(session: AsyncSession, api: Api, plan: Plan, patch: PlanPatch) -> tuple[Plan, PlanVersion]:
    if plan.status == "archived":
        raise Conflict("This plan is archived and can no longer change. Create a new plan instead.",
                       slug="plan-archived")
    version = await current_version(session, plan)
    current = terms_of(version)
    changes = {name: value for name, value in msgspec.structs.asdict(patch).items() if value is not msgspec.UNSET}
    terms = await validate_terms(session, api, msgspec.structs.replace(current, **changes))
    if all(getattr(version, column) == value for column, value in terms.items()):
        return plan, version  # nothing changes: no new version
    if await subscriber_count(session, version):
        version = PlanVersion(id=_version_id(), plan_id=plan.id,
                              version=plan.current_version + 1, **terms)
        session.add(version)
        plan.current_version = version.version
    else:
        for column, value in terms.items():
            setattr(version, column, value)
    touch(session, api)
    await session.flush()
    return plan, version


async def archive_plan(session: AsyncSession, api: Api, plan: Plan) -> tuple[Plan, PlanVersion]:
    if plan.status != "archived":
        plan.status = "archived"
        touch(session, api)
        await session.flush()
    return plan, await current_version(session, plan)


async def subscribable(session: AsyncSession, plan_id: str) -> tuple[Api, Plan, PlanVersion]:
    """For the subscriptions domain: the published API, the active plan and the version a new
    subscription gets. 404 for a plan of a draft or suspended API, 409 for an archived plan."""
    row = (await session.execute(select(Plan, Api).join(Api, Api.id == Plan.api_id).where(Plan.id == plan_id))).first()
    if row is None or row[1].status != "published":
        raise NotFound(f"No plan {plan_id!r} in the catalog. Find plans with GET /v1/catalog/apis/{{slug}}.")
    plan, api = row
    if plan.status != "active":
        raise Conflict(f"The plan {plan_id!r} is archived and takes no new subscribers. Choose another plan of "
                       f"GET /v1/catalog/apis/{api.slug}.", slug="plan-archived")
    return api, plan, await current_version(session, plan)
