"""Subscriptions and API keys (consumer side). Thin: the rules are in service.py."""

from __future__ import annotations

from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.pagination import Page
from marketplace.core.security import Principal
from marketplace.subscriptions import service
from marketplace.subscriptions.models import ApiKey, Subscription
from marketplace.subscriptions.schemas import (
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    ChangePlanIn,
    RotatedOut,
    RotateIn,
    SubscriptionIn,
    SubscriptionOut,
)
from partners.publishing.models import PlanVersion


def subscription_out(sub: Subscription, plan_name: str) -> SubscriptionOut:
    return SubscriptionOut(id=sub.id, status=sub.status, plan_id=sub.plan_id,
                           current_period_start=sub.current_period_start, current_period_end=sub.current_period_end,
                           api_id=sub.api_id, plan_version_id=sub.plan_version_id, plan_name=plan_name,
                           cancel_at_period_end=sub.cancel_at_period_end, canceled_at=sub.canceled_at,
                           created_at=sub.created_at)


def key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, prefix=key.prefix, name=key.name, subscription_id=key.subscription_id,
                     created_at=key.created_at, last_used_at=key.last_used_at, expires_at=key.expires_at,
                     revoked_at=key.revoked_at)


class SubscriptionController(Controller):
    path = "/v1/subscriptions"
    tags = ["subscriptions"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createSubscription",
          summary="Subscribe to a plan (free plans start at once; paid plans need a payment method)")
    async def create(self, data: SubscriptionIn, principal: Principal, db_session: AsyncSession) -> SubscriptionOut:
        sub, name = await service.create_subscription(db_session, principal.user_id, data.plan_id)
        return subscription_out(sub, name)

    @get("/", operation_id="listSubscriptions", summary="Your subscriptions, newest first")
    async def list_subscriptions(
        self, principal: Principal, db_session: AsyncSession,
        limit: int | None = Parameter(default=None, ge=1, le=100),
        starting_after: str | None = None,
        status: str | None = Parameter(default=None, description="active, past_due, unpaid or canceled"),
    ) -> Page[SubscriptionOut]:
        stmt = (select(Subscription, PlanVersion.name).join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
                .where(Subscription.consumer_id == principal.user_id))
        if status:
            stmt = stmt.where(Subscription.status == status)
        if starting_after:
            stmt = stmt.where(Subscription.id < starting_after)
        size = limit or 20
        rows = (await db_session.execute(stmt.order_by(Subscription.id.desc()).limit(size + 1))).all()
        has_more = len(rows) > size
        rows = rows[:size]
        return Page(data=[subscription_out(s, n) for s, n in rows], has_more=has_more,
                    next_cursor=rows[-1][0].id if has_more and rows else None)

    @get("/{subscription_id:str}", operation_id="getSubscription", summary="One of your subscriptions")
    async def get_subscription(self, subscription_id: str, principal: Principal,
                               db_session: AsyncSession) -> SubscriptionOut:
        sub = await service.get_owned(db_session, principal.user_id, subscription_id)
        return subscription_out(sub, await service.plan_name(db_session, sub.plan_version_id))

    @post("/{subscription_id:str}/change-plan", status_code=HTTP_200_OK, operation_id="changeSubscriptionPlan",
          summary="Move the subscription to another plan of the same API (upgrade or downgrade)")
    async def change_plan(self, subscription_id: str, data: ChangePlanIn, principal: Principal,
                          db_session: AsyncSession) -> SubscriptionOut:
        sub, name = await service.change_plan(db_session, principal.user_id, subscription_id, data.plan_id)
        return subscription_out(sub, name)

    @patch("/{subscription_id:str}", operation_id="updateSubscription", summary="Change plan (same as change-plan)")
    async def update(self, subscription_id: str, data: ChangePlanIn, principal: Principal,
                     db_session: AsyncSession) -> SubscriptionOut:
        sub, name = await service.change_plan(db_session, principal.user_id, subscription_id, data.plan_id)
        return subscription_out(sub, name)

    @delete("/{subscription_id:str}", status_code=HTTP_200_OK, operation_id="cancelSubscription",
            summary="Cancel at the end of the period (?now=true: at once)")
    async def cancel(self, subscription_id: str, principal: Principal, db_session: AsyncSession,
                     now: bool = False) -> SubscriptionOut:
        sub = await service.cancel(db_session, principal.user_id, subscription_id, now=now)
        return subscription_out(sub, await service.plan_name(db_session, sub.plan_version_id))


class ApiKeyController(Controller):
    path = "/v1/api-keys"
    tags = ["api keys"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createApiKey",
          summary="Create an API key for a subscription (the key is shown only in this answer)")
    async def create(self, data: ApiKeyIn, principal: Principal, db_session: AsyncSession) -> ApiKeyCreatedOut:
        key, token = await service.create_key(db_session, principal.user_id, data.subscription_id, data.name)
        return ApiKeyCreatedOut(id=key.id, key=token.value, prefix=key.prefix, name=key.name,
                                subscription_id=key.subscription_id, created_at=key.created_at)

    @get("/", operation_id="listApiKeys", summary="Your API keys, without their secrets")
    async def list_keys(self, principal: Principal, db_session: AsyncSession,
                        subscription_id: str | None = None, include_revoked: bool = False) -> list[ApiKeyOut]:
        keys = await service.list_keys(db_session, principal.user_id, subscription_id=subscription_id,
                                       include_revoked=include_revoked)
        return [key_out(k) for k in keys]

    @delete("/{key_id:str}", status_code=HTTP_200_OK, operation_id="revokeApiKey",
            summary="Revoke a key at once (every gateway process refuses it within a second)")
    async def revoke(self, key_id: str, principal: Principal, db_session: AsyncSession) -> ApiKeyOut:
        return key_out(await service.revoke_key(db_session, principal.user_id, key_id))

    @post("/{key_id:str}/rotate", status_code=HTTP_201_CREATED, operation_id="rotateApiKey",
          summary="Issue a new key; the old one keeps working for an overlap window (default 24 h)")
    async def rotate(self, key_id: str, principal: Principal, db_session: AsyncSession,
                     data: RotateIn | None = None) -> RotatedOut:
        key, token, old_expires = await service.rotate_key(db_session, principal.user_id, key_id,
                                                           data.overlap_seconds if data else None)
        return RotatedOut(id=key.id, key=token.value, prefix=key.prefix, name=key.name,
                          subscription_id=key.subscription_id, created_at=key.created_at, replaces=key_id,
                          old_key_expires_at=old_expires)


ROUTES = [SubscriptionController, ApiKeyController]
