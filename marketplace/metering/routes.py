"""Usage read side (consumer and partner), meters and partner ingestion. Thin controllers."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from litestar import Controller, Response, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.db import utcnow
from marketplace.core.errors import BadRequest
from marketplace.core.security import Principal
from marketplace.core.tenancy import partner_role
from marketplace.core.times import as_utc
from marketplace.metering import meters as meter_service
from marketplace.metering import service
from marketplace.metering.pricing import estimate_amount
from marketplace.metering.schemas import (
    EndpointUsageOut,
    MeterIn,
    MeterOut,
    MeterUsageOut,
    PartnerUsageOut,
    PartnerUsageRow,
    QuotaOut,
    SubscriptionUsageOut,
    UsageEventsIn,
    UsageEventsOut,
)
from marketplace.subscriptions.periods import period_containing
from marketplace.subscriptions.service import get_owned
from partners.publishing.models import PlanVersion


class SubscriptionUsageController(Controller):
    path = "/v1/subscriptions/{subscription_id:str}/usage"
    tags = ["usage"]

    @get("/", operation_id="getSubscriptionUsage",
         summary="Usage in the current period: units, quota, per endpoint, estimated amount")
    async def usage(self, subscription_id: str, principal: Principal, db_session: AsyncSession) -> SubscriptionUsageOut:
        sub = await get_owned(db_session, principal.user_id, subscription_id)
        plan = await db_session.get(PlanVersion, sub.plan_version_id)
        assert plan is not None
        start, end = sub.current_period_start, sub.current_period_end
        now = utcnow()
        if now >= end and sub.status != "canceled":
            start, end = period_containing(sub.created_at, now)
        rows = await service.usage_for_period(db_session, sub.id, start, end)
        units = sum(r.units for r in rows)
        quota = None
        if plan.quota_limit is not None:
            quota = QuotaOut(limit=int(plan.quota_limit), hard=plan.quota_hard, used=units,
                             remaining=max(0, int(plan.quota_limit) - units))
        meters = await meter_service.meter_values(db_session, sub, start, end)
        return SubscriptionUsageOut(
            subscription_id=sub.id, period_start=start, period_end=end, units=units, calls=sum(r.calls for r in rows),
            included_units=int(plan.included_units or 0), quota=quota,
            by_endpoint=[EndpointUsageOut(method=r.method, path=r.path, calls=r.calls, units=r.units,
                                          endpoint_id=r.endpoint_id) for r in rows],
            estimated_amount=estimate_amount(plan, units), currency=plan.currency,
            meters=[MeterUsageOut(meter=m, aggregation=a, value=v) for m, a, v in meters],
        )


class MeterController(Controller):
    path = "/v1/apis/{api_id:str}/meters"
    tags = ["usage"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createMeter",
          summary="Define a custom meter for partner-reported usage (count, sum, max, unique or last)")
    async def create(self, api_id: str, data: MeterIn, principal: Principal, db_session: AsyncSession) -> MeterOut:
        m = await meter_service.create_meter(db_session, principal, api_id, data.name, data.aggregation,
                                             data.description)
        return MeterOut(id=m.id, api_id=m.api_id, name=m.name, aggregation=m.aggregation,
                        description=m.description, created_at=m.created_at)

    @get("/", operation_id="listMeters", summary="The API's meters")
    async def list_meters(self, api_id: str, principal: Principal, db_session: AsyncSession) -> list[MeterOut]:
        return [MeterOut(id=m.id, api_id=m.api_id, name=m.name, aggregation=m.aggregation,
                         description=m.description, created_at=m.created_at)
                for m in await meter_service.list_meters(db_session, principal, api_id)]


class UsageEventController(Controller):
    path = "/v1/usage-events"
    tags = ["usage"]

    @post("/", status_code=HTTP_200_OK, operation_id="ingestUsageEvents",
          summary="Report custom usage (partners): up to 1000 events; resent event_ids are duplicates")
    async def ingest(self, data: UsageEventsIn, principal: Principal, db_session: AsyncSession) -> UsageEventsOut:
        return await meter_service.ingest(db_session, principal, data.events)


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    # Times without a zone are UTC; odd offsets and out-of-range years are a 422, never a 500.
    end = as_utc(end, "end") if end is not None else utcnow() + timedelta(hours=1)
    start = as_utc(start, "start") if start is not None else as_utc(end - timedelta(days=31), "end")
    if start >= end:
        raise BadRequest("start must be before end.")
    return start, end


class PartnerUsageController(Controller):
    path = "/v1/partners/{partner_id:str}"
    tags = ["usage"]

    async def _rows(self, db_session: AsyncSession, principal: Principal, partner_id: str, api_id: str | None,
                    group_by: str, start: datetime | None, end: datetime | None) -> PartnerUsageOut:
        await partner_role(db_session, principal, partner_id)
        if group_by not in ("consumer", "day"):
            raise BadRequest("group_by must be consumer or day.")
        lo, hi = _range(start, end)
        rows = await service.partner_usage(db_session, partner_id, api_id=api_id, group_by=group_by, start=lo, end=hi)
        return PartnerUsageOut(partner_id=partner_id, start=lo, end=hi, group_by=group_by,
                               data=[PartnerUsageRow(**r) for r in rows])

    @get("/usage", operation_id="getPartnerUsage",
         summary="Billable usage of the partner's APIs by consumer or by day (format=csv for a CSV file)")
    async def usage(self, partner_id: str, principal: Principal, db_session: AsyncSession,
                    api_id: str | None = None, group_by: str = "consumer", start: datetime | None = None,
                    end: datetime | None = None, format: str = "json") -> Response[bytes] | PartnerUsageOut:
        out = await self._rows(db_session, principal, partner_id, api_id, group_by, start, end)
        return _csv(out) if format == "csv" else out

    @get("/usage.csv", operation_id="getPartnerUsageCsv", summary="The same usage as a CSV file")
    async def usage_csv(self, partner_id: str, principal: Principal, db_session: AsyncSession,
                        api_id: str | None = None, group_by: str = "consumer", start: datetime | None = None,
                        end: datetime | None = None) -> Response[bytes]:
        return _csv(await self._rows(db_session, principal, partner_id, api_id, group_by, start, end))


def _csv(out: PartnerUsageOut) -> Response[bytes]:
    buf = io.StringIO()
    cols = ["day", "api_id", "calls", "units"] if out.group_by == "day" else \
        ["consumer_id", "subscription_id", "api_id", "calls", "units"]
    writer = csv.writer(buf)
    writer.writerow(cols)
    for r in out.data:
        writer.writerow([getattr(r, c) for c in cols])
    return Response(buf.getvalue().encode(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="usage-{out.partner_id}-{out.group_by}.csv"'})


ROUTES = [SubscriptionUsageController, MeterController, UsageEventController, PartnerUsageController]
