"""Test data for billing: partners, APIs, plans and subscriptions inserted directly (the publishing
and subscriptions APIs are other domains'), usage served by an in-memory source, and Stripe through
respx with signed webhook deliveries."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.accounts.models import User as UserRow
from marketplace.billing import usage as usage_source
from marketplace.billing.rating import EndpointUsage
from marketplace.core.ids import new_id
from marketplace.core.security import encrypt
from marketplace.subscriptions.models import Subscription
from partners.publishing.models import Api, Plan, PlanVersion
from tests.helpers import Api as HttpApi
from tests.helpers import User, unique

WEBHOOK_SECRET = "whsec_test_marketplace"  # as set by the shared `stripe_api` fixture
STRIPE_BASE = "https://stripe.test"


class FakeUsage:
    """Usage per subscription as (recorded_at, EndpointUsage): what metering would report."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[datetime, EndpointUsage]]] = {}

    def add(self, subscription_id: str, at: datetime, units: int, *, path: str = "/forecast/{city}",
            method: str = "GET", endpoint_id: str = "ep_test", calls: int | None = None) -> None:
        self.rows.setdefault(subscription_id, []).append(
            (at, EndpointUsage(endpoint_id=endpoint_id, method=method, path=path,
                               calls=units if calls is None else calls, units=units)))

    async def __call__(self, session: AsyncSession, subscription_id: str, start: datetime,
                       end: datetime) -> list[EndpointUsage]:
        merged: dict[tuple[str, str, str], list[int]] = {}
        for at, u in self.rows.get(subscription_id, []):
            if start <= at < end:
                acc = merged.setdefault((u.endpoint_id or "", u.method, u.path), [0, 0])
                acc[0] += u.calls
                acc[1] += u.units
        return [EndpointUsage(endpoint_id=e, method=m, path=p, calls=c, units=n) for (e, m, p), (c, n) in merged.items()]


@dataclass
class World:
    consumer: User
    partner_owner: User
    partner_id: str
    api_id: str
    plan_id: str
    plan_version_id: str
    subscription_id: str
    extra: dict[str, Any] = field(default_factory=dict)


async def make_operator(http: HttpApi, sessionmaker: async_sessionmaker[AsyncSession]) -> User:
    user = await http.signup("Operator")
    async with sessionmaker.begin() as session:
        await session.execute(update(UserRow).where(UserRow.id == user.id).values(is_operator=True))
    return user


async def make_world(http: HttpApi, sessionmaker: async_sessionmaker[AsyncSession], *,
                     period_start: datetime, period_end: datetime, monthly_fee: int = 4900,
                     included_units: int = 1000, unit_pricing: dict[str, Any] | None = None,
                     currency: str = "usd", fee_percent: int | None = None, consumer: User | None = None,
                     partner_owner: User | None = None, partner_id: str | None = None) -> World:
    consumer = consumer or await http.signup("Consumer")
    if partner_owner is None or partner_id is None:
        partner_owner = await http.signup("Partner")
        partner_id = (await http.partner(partner_owner))["id"]
    if unit_pricing is None:
        unit_pricing = {"model": "per_unit", "unit_amount": "0.5"}
    async with sessionmaker.begin() as session:
        api = Api(id=new_id("api"), partner_id=partner_id, slug=unique("api"), name="Weather", description="",
                  upstream_url="https://upstream.example", tags=[], status="published",
                  proxy_secret_encrypted=encrypt("s"), platform_fee_percent=fee_percent, revision=1)
        session.add(api)
        await session.flush()
        plan = Plan(id=new_id("plan"), api_id=api.id, status="active", current_version=1)
        session.add(plan)
        await session.flush()
        version = PlanVersion(id=new_id("plan").replace("pln_", "plv_"), plan_id=plan.id, version=1, name="Pro",
                              currency=currency, monthly_fee=monthly_fee, included_units=included_units,
                              unit_pricing=unit_pricing, quota_limit=None, quota_hard=False, scopes=[])
        session.add(version)
        await session.flush()
        sub = Subscription(id=new_id("subscription"), consumer_id=consumer.id, api_id=api.id, partner_id=partner_id,
                           plan_id=plan.id, plan_version_id=version.id, status="active",
                           current_period_start=period_start, current_period_end=period_end,
                           cancel_at_period_end=False, revision=1)
        session.add(sub)
    return World(consumer=consumer, partner_owner=partner_owner, partner_id=partner_id, api_id=api.id,
                 plan_id=plan.id, plan_version_id=version.id, subscription_id=sub.id)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def signed(event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp or int(time.time()))
    return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}


def stripe_event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{secrets.token_hex(8)}", "object": "event", "type": type_,
            "created": int(time.time()), "data": {"object": obj}, "livemode": False, "api_version": "2024-06-20"}


def form(request: Any) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.content.decode()))


def idempotency_keys(calls: Sequence[Any]) -> list[str | None]:
    return [call.request.headers.get("idempotency-key") for call in calls]


def install_usage() -> FakeUsage:
    fake = FakeUsage()
    usage_source.set_source(fake)
    return fake
