"""Helpers that publish APIs through the HTTP API the way a partner would."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from tests.helpers import Api, User, unique

PLAN: dict[str, Any] = {
    "name": "Pro", "currency": "usd",
    "monthly_fee": 4900,
    "included_units": 50000,
    "unit_pricing": {"model": "graduated",
                     "tiers": [{"up_to": 100000, "unit_amount": "0.1"},
                               {"up_to": None, "unit_amount": "0.05"}]},
    "quota": {"limit": 200000, "hard": False},
    "rate_limit": {"per_second": 10, "per_minute": 300},
    "scopes": ["weather:read"],
}


def plan_body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(PLAN)
    body.update(changes)
    return body


@dataclass
class Draft:
    """A partner's user, the partner and one of its APIs (as the API answered)."""

    user: User
    partner_id: str
    api: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.api["id"])

    @property
    def slug(self) -> str:
        return str(self.api["slug"])


async def create_api(api: Api, user: User, partner_id: str, **fields: Any) -> dict[str, Any]:
    body = {"partner_id": partner_id, "slug": unique("weather"), "name": "Acme Weather",
            "description": "Forecasts for 200,000 cities, hourly.", "upstream_url": "https://upstream.example.com",
            "category": "weather", "tags": ["forecast"], **fields}
    response = await api.client.post("/v1/apis", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def draft(api: Api, **fields: Any) -> Draft:
    user = await api.signup("Partner Person")
    partner = await api.partner(user, "Acme Weather Inc.")
    return Draft(user=user, partner_id=partner["id"], api=await create_api(api, user, partner["id"], **fields))


async def post_ok(api: Api, user: User, path: str, body: dict[str, Any] | None = None,
                  status: int = 201) -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    return dict(response.json())


async def complete(api: Api, d: Draft, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Give the draft a scope, an endpoint and a plan (the plan is returned)."""
    await post_ok(api, d.user, f"/v1/apis/{d.id}/scopes", {"name": "weather:read", "description": "Read forecasts"})
    await post_ok(api, d.user, f"/v1/apis/{d.id}/endpoints",
                  {"method": "GET", "path": "/forecast/{city}", "scope": "weather:read"})
    return await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", plan or PLAN)


async def published(api: Api, **fields: Any) -> tuple[Draft, dict[str, Any]]:
    d = await draft(api, **fields)
    plan = await complete(api, d)
    d.api = await post_ok(api, d.user, f"/v1/apis/{d.id}/publish", status=200)
    return d, plan


@contextlib.asynccontextmanager
async def db() -> AsyncIterator[AsyncSession]:
    """A session on the run's database in the test's own event loop (the app's engine lives in the
    test client's loop); commits on exit."""
    from marketplace.settings import get_settings

    engine = create_async_engine(get_settings().database_url or "", poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            yield session
    finally:
        await engine.dispose()


async def operator(api: Api) -> User:
    from marketplace.accounts.service import create_operator

    email = f"{unique('op')}@example.com"
    async with db() as session:
        user, _ = await create_operator(session, email=email, password="operator-pass")
        user_id = user.id
    login = await api.client.post("/v1/login", json={"email": email, "password": "operator-pass"})
    assert login.status_code == 200, login.text
    return User(id=user_id, email=email, token=login.json()["token"])


async def subscribe_directly(consumer: User, d: Draft, plan_id: str) -> str:
    """A subscription row on the plan's current version (the subscriptions API is another domain's)."""
    from sqlalchemy import select

    from marketplace.core.db import utcnow
    from marketplace.core.ids import new_id
    from marketplace.subscriptions.models import Subscription
    from partners.publishing.models import Plan, PlanVersion

    async with db() as session:
        version_id = await session.scalar(
            select(PlanVersion.id).join(Plan, Plan.id == PlanVersion.plan_id)
            .where(Plan.id == plan_id, PlanVersion.version == Plan.current_version))
        now = utcnow()
        subscription = Subscription(id=new_id("subscription"), consumer_id=consumer.id, api_id=d.id,
                                    partner_id=d.partner_id, plan_id=plan_id, plan_version_id=version_id,
                                    status="active", current_period_start=now,
                                    current_period_end=now + timedelta(days=30))
        session.add(subscription)
    return subscription.id
