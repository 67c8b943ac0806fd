"""Webhook endpoints, their deliveries log, resend/replay/test, and the event catalog."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from arq import create_pool
from litestar import Controller, Litestar, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.auth import require_scope
from marketplace.core.pagination import Page
from marketplace.core.redis import arq_settings, queue_name
from marketplace.core.security import Principal
from webhooks import relay, service
from webhooks.catalog import EVENT_TYPES
from webhooks.models import WebhookAttempt, WebhookEndpoint
from webhooks.schemas import (
    AttemptOut,
    EndpointCreatedOut,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EventTypeOut,
    OwnerOut,
    QueuedOut,
    ReplayIn,
    ReplayOut,
    SecretOut,
)

SCOPE = "webhooks"  # OAuth access tokens need it; personal tokens may do anything their user may
Limit = Annotated[int | None, Parameter(ge=1, le=100, description="Page size (default 20)")]
Cursor = Annotated[str | None, Parameter(description="The last id of the previous page")]


def endpoint_out(e: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(id=e.id, url=e.url, events=list(e.event_types),
                       owner=OwnerOut(partner_id=e.partner_id, consumer_id=e.consumer_id),
                       description=e.description, enabled=e.enabled, disabled_reason=e.disabled_reason,
                       failing_since=e.failing_since, last_success_at=e.last_success_at,
                       created_at=e.created_at, updated_at=e.updated_at)


def attempt_out(a: WebhookAttempt) -> AttemptOut:
    return AttemptOut(id=a.id, delivery_id=a.delivery_id, event_id=a.event_id, event_type=a.event_type,
                      attempt=a.attempt, status="succeeded" if a.succeeded else "failed",
                      status_code=a.status_code, error=a.error, at=a.at, latency_ms=a.latency_ms,
                      trigger=a.trigger, response=a.response_snippet, next_attempt_at=a.next_attempt_at)


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createWebhookEndpoint",
          summary="Create a webhook endpoint (the signing secret is in the answer)")
    async def create(self, data: EndpointIn, principal: Principal, db_session: AsyncSession) -> EndpointCreatedOut:
        require_scope(principal, SCOPE)
        endpoint, secret = await service.create_endpoint(
            db_session, principal, url=data.url, events=data.events, partner_id=data.owner.partner_id,
            description=data.description, enabled=data.enabled)
        return EndpointCreatedOut(id=endpoint.id, url=endpoint.url, events=list(endpoint.event_types),
                                  owner=OwnerOut(partner_id=endpoint.partner_id, consumer_id=endpoint.consumer_id),
                                  description=endpoint.description, enabled=endpoint.enabled, secret=secret,
                                  created_at=endpoint.created_at)

    @get("/", operation_id="listWebhookEndpoints",
         summary="Your endpoints and those of partners you are a member of, newest first")
    async def list_endpoints(self, principal: Principal, db_session: AsyncSession,
                             partner_id: str | None = None, limit: Limit = None,
                             starting_after: Cursor = None) -> Page[EndpointOut]:
        require_scope(principal, SCOPE)
        page = await service.list_endpoints(db_session, principal, partner_id=partner_id, limit=limit,
                                            starting_after=starting_after)
        return Page(data=[endpoint_out(e) for e in page.data], has_more=page.has_more, next_cursor=page.next_cursor)

    @get("/{endpoint_id:str}", operation_id="getWebhookEndpoint", summary="A webhook endpoint")
    async def get_endpoint(self, endpoint_id: str, principal: Principal, db_session: AsyncSession) -> EndpointOut:
        require_scope(principal, SCOPE)
        return endpoint_out(await service.get_endpoint(db_session, principal, endpoint_id))

    @patch("/{endpoint_id:str}", operation_id="updateWebhookEndpoint",
           summary="Change the URL, event types, description, or enable/disable")
    async def update(self, endpoint_id: str, data: EndpointPatch, principal: Principal,
                     db_session: AsyncSession) -> EndpointOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id, for_update=True)
        await service.update_endpoint(db_session, endpoint, url=data.url, events=data.events,
                                      description=data.description, enabled=data.enabled)
        return endpoint_out(endpoint)

    @delete("/{endpoint_id:str}", operation_id="deleteWebhookEndpoint",
            summary="Delete an endpoint (its pending deliveries are dropped)")
    async def delete_endpoint(self, endpoint_id: str, principal: Principal, db_session: AsyncSession) -> None:
        require_scope(principal, SCOPE)
        await service.delete_endpoint(db_session, await service.get_endpoint(db_session, principal, endpoint_id))

    @get("/{endpoint_id:str}/secret", operation_id="getWebhookEndpointSecret",
         summary="The signing secret(s): the current one, and the previous one while it still signs")
    async def secret(self, endpoint_id: str, principal: Principal, db_session: AsyncSession) -> SecretOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id)
        current, previous = service.active_secrets(endpoint)
        return SecretOut(secret=current, previous_secret=previous,
                         previous_secret_expires_at=endpoint.previous_secret_expires_at if previous else None)

    @post("/{endpoint_id:str}/rotate-secret", status_code=HTTP_200_OK, operation_id="rotateWebhookEndpointSecret",
          summary="New signing secret; the old one keeps signing alongside it for 24 hours")
    async def rotate(self, endpoint_id: str, principal: Principal, db_session: AsyncSession) -> SecretOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id, for_update=True)
        await service.rotate_secret(db_session, endpoint)
        current, previous = service.active_secrets(endpoint)
        return SecretOut(secret=current, previous_secret=previous,
                         previous_secret_expires_at=endpoint.previous_secret_expires_at)

    @post("/{endpoint_id:str}/test", status_code=HTTP_202_ACCEPTED, operation_id="testWebhookEndpoint",
          summary="Send a webhook.test event to this endpoint")
    async def test(self, endpoint_id: str, principal: Principal, db_session: AsyncSession) -> QueuedOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id)
        delivery = await service.send_test(db_session, endpoint)
        return QueuedOut(delivery_id=delivery.id, event_id=delivery.event_id)

    @get("/{endpoint_id:str}/deliveries", operation_id="listWebhookDeliveries",
         summary="Delivery attempts to this endpoint, newest first")
    async def deliveries(self, endpoint_id: str, principal: Principal, db_session: AsyncSession,
                         status: Literal["succeeded", "failed"] | None = None,
                         event_type: str | None = None, limit: Limit = None,
                         starting_after: Cursor = None) -> Page[AttemptOut]:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id)
        page = await service.list_attempts(db_session, endpoint, status=status, event_type=event_type, limit=limit,
                                           starting_after=starting_after)
        return Page(data=[attempt_out(a) for a in page.data], has_more=page.has_more, next_cursor=page.next_cursor)

    @post("/{endpoint_id:str}/deliveries/{event_id:str}/resend", status_code=HTTP_202_ACCEPTED,
          operation_id="resendWebhookEvent", summary="Send one event to this endpoint again")
    async def resend(self, endpoint_id: str, event_id: str, principal: Principal,
                     db_session: AsyncSession) -> QueuedOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id)
        delivery = await service.resend(db_session, endpoint, event_id)
        return QueuedOut(delivery_id=delivery.id, event_id=delivery.event_id)

    @post("/{endpoint_id:str}/replay", status_code=HTTP_202_ACCEPTED, operation_id="replayWebhookEvents",
          summary="Send again every event (matching the endpoint's types) created since a time")
    async def replay(self, endpoint_id: str, data: ReplayIn, principal: Principal,
                     db_session: AsyncSession) -> ReplayOut:
        require_scope(principal, SCOPE)
        endpoint = await service.get_endpoint(db_session, principal, endpoint_id)
        since = service.parse_since(data.since)
        return ReplayOut(since=since, events=await service.replay(db_session, endpoint, since))


@get("/v1/webhook-event-types", tags=["webhooks"], operation_id="listWebhookEventTypes",
     summary="Every event type, with a description and an example payload (no auth needed)", security=[])
async def event_types() -> list[EventTypeOut]:
    return [EventTypeOut(type=name, description=t["description"], owners=t["owners"], example=t["example"])
            for name, t in EVENT_TYPES.items()]


@contextlib.asynccontextmanager
async def webhooks_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Commits in this process nudge the relay through a small arq pool of its own (kept apart from
    app.state.arq so that nothing else's use of that pool waits on the nudges)."""
    pool = await create_pool(arq_settings(), default_queue_name=queue_name())
    relay.set_enqueuer(pool)
    try:
        yield
    finally:
        relay.set_enqueuer(None)
        await pool.aclose()


ROUTES = [WebhookEndpointController, event_types]
LIFESPANS = [webhooks_lifespan]
