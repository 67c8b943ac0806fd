"""Rows the OAuth tests need from other domains (partners' APIs and scopes, plans, a consumer's
subscriptions), inserted directly through `app.state.sessionmaker`, since the publishing and
subscriptions APIs are built on other branches."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ulid import ULID

from marketplace.core.db import utcnow
from marketplace.core.ids import new_id
from marketplace.core.security import encrypt
from marketplace.subscriptions.models import Subscription
from partners.publishing.models import Api, Plan, PlanVersion, Scope
from tests.helpers import Api as HttpApi
from tests.helpers import User, unique


@dataclass
class PublishedApi:
    id: str
    partner_id: str
    name: str
    plan_id: str
    plan_version_id: str
    scopes: list[str] = field(default_factory=list)


async def published_api(app: Any, api: HttpApi, *, name: str = "Weather", scopes: dict[str, str] | None = None,
                        plan_scopes: list[str] | None = None) -> PublishedApi:
    """A published API with scopes (name → description) and one plan granting `plan_scopes`."""
    scopes = scopes or {"weather:read": "Read forecasts for any city", "weather:write": "Report observations"}
    plan_scopes = plan_scopes if plan_scopes is not None else list(scopes)[:1]
    owner = await api.signup("Partner Owner")
    partner = await api.partner(owner, f"{name} Inc")
    api_id, plan_id, version_id = new_id("api"), new_id("plan"), f"plv_{str(ULID()).lower()}"

    async def insert() -> None:
        async with app.state.sessionmaker.begin() as session:
            session.add(Api(id=api_id, partner_id=partner["id"], slug=unique("api"), name=name, description="",
                            upstream_url="https://upstream.example.com", tags=[], status="published",
                            published_at=utcnow(), proxy_secret_encrypted=encrypt("proxy-secret")))
            await session.flush()
            for scope_name, description in scopes.items():
                session.add(Scope(id=new_id("scope"), api_id=api_id, name=scope_name, description=description))
            session.add(Plan(id=plan_id, api_id=api_id))
            await session.flush()
            session.add(PlanVersion(id=version_id, plan_id=plan_id, version=1, name="Free", currency="usd",
                                    scopes=plan_scopes))

    await insert()
    return PublishedApi(api_id, partner["id"], name, plan_id, version_id, plan_scopes)


async def subscribe(app: Any, api: HttpApi, consumer: User, published: PublishedApi, status: str = "active") -> str:
    sub_id = new_id("subscription")
    now = utcnow()

    async def insert() -> None:
        async with app.state.sessionmaker.begin() as session:
            session.add(Subscription(id=sub_id, consumer_id=consumer.id, api_id=published.id,
                                     partner_id=published.partner_id, plan_id=published.plan_id,
                                     plan_version_id=published.plan_version_id, status=status,
                                     current_period_start=now, current_period_end=now + timedelta(days=30)))

    await insert()
    return sub_id


async def cancel(app: Any, api: HttpApi, sub_id: str) -> None:
    async def update() -> None:
        async with app.state.sessionmaker.begin() as session:
            sub = await session.get(Subscription, sub_id)
            assert sub is not None
            sub.status = "canceled"

    await update()
