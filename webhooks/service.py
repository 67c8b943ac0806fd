"""Webhook endpoints and operations on them: create, list, update, rotate, test, resend, replay.

Every function takes the caller's session and never commits. An endpoint belongs to a partner
(any member may manage it) or to a consumer (only that user); anyone else gets 404.
New deliveries are written with `job_id = NULL`; the relay hands them to arq after the commit
(see `webhooks.relay`).
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.db import Base, utcnow
from marketplace.core.errors import Conflict, NotFound, Unprocessable
from marketplace.core.events import Event, publish
from marketplace.core.ids import new_id
from marketplace.core.pagination import Page, paginate
from marketplace.core.security import Principal, decrypt, encrypt
from marketplace.core.ssrf import UnsafeURL, check_url_shape, resolve_public
from marketplace.core.tenancy import partner_role
from marketplace.settings import get_settings
from webhooks.catalog import EVENT_TYPES
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.relay import request_relay

ROTATION_OVERLAP = timedelta(hours=24)
REPLAY_MAX_EVENTS = 10_000


def new_secret() -> str:
    """`whsec_` + base64 of 32 random bytes (Standard Webhooks format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"No webhook endpoint {endpoint_id!r} that you can manage. List yours with "
                    "GET /v1/webhook-endpoints.")


# --- validation ---------------------------------------------------------------------------------

def validate_event_types(events: list[str]) -> list[str]:
    unique = list(dict.fromkeys(events))
    if "*" in unique:
        if len(unique) > 1:
            raise Unprocessable('Use either ["*"] for every event type or a list of types, not both.',
                                errors=[{"field": "events", "message": '"*" must be alone'}])
        return ["*"]
    unknown = [name for name in unique if name not in EVENT_TYPES]
    if unknown:
        raise Unprocessable(f"Unknown event types: {', '.join(unknown)}. See GET /v1/webhook-event-types.",
                            errors=[{"field": "events", "message": f"unknown: {name}"} for name in unknown])
    return unique


async def validate_url(url: str) -> str:
    settings = get_settings()
    try:
        check_url_shape(url)
        if not settings.allow_private_networks and not url.startswith("https://"):
            raise UnsafeURL("must be an https URL")
        await resolve_public(url)
    except UnsafeURL as exc:
        raise Unprocessable(f"The webhook URL {exc}.", errors=[{"field": "url", "message": str(exc)}]) from exc
    return url


# --- visibility ---------------------------------------------------------------------------------

def _member_partner_ids(principal: Principal) -> Select[Any]:
    members = Base.metadata.tables["partner_members"]
    return select(members.c.partner_id).where(members.c.user_id == principal.user_id)


def visible_endpoints(principal: Principal) -> Any:
    """The SQL condition: endpoints the caller owns as a consumer or as a member of their partner."""
    return or_(WebhookEndpoint.consumer_id == principal.user_id,
               WebhookEndpoint.partner_id.in_(_member_partner_ids(principal)))


async def get_endpoint(session: AsyncSession, principal: Principal, endpoint_id: str,
                       *, for_update: bool = False) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, visible_endpoints(principal))
    if for_update:
        stmt = stmt.with_for_update()
    endpoint = await session.scalar(stmt)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return endpoint


# --- endpoints ----------------------------------------------------------------------------------

async def create_endpoint(session: AsyncSession, principal: Principal, *, url: str, events: list[str],
                          partner_id: str | None, description: str, enabled: bool) -> tuple[WebhookEndpoint, str]:
    if partner_id is not None:
        await partner_role(session, principal, partner_id)
    event_types = validate_event_types(events)
    await validate_url(url)
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("webhook_endpoint"), partner_id=partner_id,
        consumer_id=None if partner_id else principal.user_id, url=url, description=description,
        event_types=event_types, enabled=enabled, secret_encrypted=encrypt(secret),
        created_at=utcnow(), updated_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def list_endpoints(session: AsyncSession, principal: Principal, *, partner_id: str | None,
                         limit: int | None, starting_after: str | None) -> Page[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(visible_endpoints(principal))
    if partner_id is not None:
        await partner_role(session, principal, partner_id)
        stmt = stmt.where(WebhookEndpoint.partner_id == partner_id)
    return await paginate(session, stmt, WebhookEndpoint.id, limit=limit, starting_after=starting_after,
                          to_schema=lambda row: row)


async def update_endpoint(session: AsyncSession, endpoint: WebhookEndpoint, *, url: str | None,
                          events: list[str] | None, description: str | None, enabled: bool | None) -> None:
    if events is not None:
        endpoint.event_types = validate_event_types(events)
    if url is not None and url != endpoint.url:
        endpoint.url = await validate_url(url)
    if description is not None:
        endpoint.description = description
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "disabled by its owner"
        if enabled:
            endpoint.failing_since = None  # a fresh start for the auto-disable clock
    endpoint.updated_at = utcnow()
    await session.flush()


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.delete(endpoint)
    await session.flush()


def active_secrets(endpoint: WebhookEndpoint, now: datetime | None = None) -> tuple[str, str | None]:
    now = now or utcnow()
    previous = None
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at and \
            endpoint.previous_secret_expires_at > now:
        previous = decrypt(endpoint.previous_secret_encrypted)
    return decrypt(endpoint.secret_encrypted), previous


async def rotate_secret(session: AsyncSession, endpoint: WebhookEndpoint) -> str:
    """A new secret signs from now on; the current one keeps signing alongside it for 24 hours."""
    secret = new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    endpoint.secret_encrypted = encrypt(secret)
    endpoint.updated_at = utcnow()
    await session.flush()
    return secret


# --- sending ------------------------------------------------------------------------------------

def _owner_condition(endpoint: WebhookEndpoint) -> Any:
    if endpoint.partner_id is not None:
        return Event.partner_id == endpoint.partner_id
    return Event.consumer_id == endpoint.consumer_id


def _queue_delivery(session: AsyncSession, endpoint: WebhookEndpoint, event_id: str, event_type: str,
                    trigger: str) -> WebhookDelivery:
    delivery = WebhookDelivery(id=new_id("delivery"), event_id=event_id, endpoint_id=endpoint.id,
                               event_type=event_type, trigger=trigger, status="pending", attempts=0,
                               next_attempt_at=utcnow(), job_id=None, created_at=utcnow())
    session.add(delivery)
    request_relay(session)
    return delivery


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict(f"Webhook endpoint {endpoint.id} is disabled ({endpoint.disabled_reason or 'by its owner'}). "
                       f"Enable it with PATCH /v1/webhook-endpoints/{endpoint.id} {{\"enabled\": true}}.")


async def send_test(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event for this endpoint only (recorded relayed, so no other endpoint gets it)."""
    _require_enabled(endpoint)
    event = publish(session, "webhook.test",
                    {"message": "This is a test event from the API marketplace.", "endpoint_id": endpoint.id},
                    partner_id=endpoint.partner_id, consumer_id=endpoint.consumer_id)
    event.relayed_at = utcnow()
    await session.flush()
    delivery = _queue_delivery(session, endpoint, event.id, event.type, "test")
    await session.flush()
    return delivery


async def resend(session: AsyncSession, endpoint: WebhookEndpoint, event_id: str) -> WebhookDelivery:
    _require_enabled(endpoint)
    event = await session.scalar(select(Event).where(Event.id == event_id, _owner_condition(endpoint)))
    if event is None:
        raise NotFound(f"No event {event_id!r} for this endpoint's owner. See GET "
                       f"/v1/webhook-endpoints/{endpoint.id}/deliveries for the events it received.")
    delivery = _queue_delivery(session, endpoint, event.id, event.type, "resend")
    await session.flush()
    return delivery


def parse_since(value: str) -> datetime:
    try:
        since = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise Unprocessable(f"since {value!r} is not an ISO 8601 time; send e.g. \"2026-11-20T00:00:00Z\".",
                            errors=[{"field": "since", "message": "not ISO 8601"}]) from exc
    if since.tzinfo is None:
        raise Unprocessable("since needs a time zone (e.g. a trailing Z for UTC).",
                            errors=[{"field": "since", "message": "missing time zone"}])
    now = utcnow()
    if since > now:
        raise Unprocessable("since is in the future; nothing to replay.",
                            errors=[{"field": "since", "message": "in the future"}])
    oldest = now - timedelta(days=get_settings().webhook_retention_days)
    if since < oldest:
        raise Unprocessable(f"since is older than the {get_settings().webhook_retention_days}-day retention; "
                            f"use a time after {oldest.isoformat()}.",
                            errors=[{"field": "since", "message": "older than retention"}])
    return since


async def replay(session: AsyncSession, endpoint: WebhookEndpoint, since: datetime) -> int:
    """Queue every event of this endpoint's owner (matching its filter) created at or after `since`."""
    _require_enabled(endpoint)
    stmt = select(Event.id, Event.type).where(_owner_condition(endpoint), Event.created_at >= since,
                                              Event.type != "webhook.test")
    if endpoint.event_types != ["*"]:
        stmt = stmt.where(Event.type.in_(endpoint.event_types))
    rows = (await session.execute(stmt.order_by(Event.id).limit(REPLAY_MAX_EVENTS + 1))).all()
    if len(rows) > REPLAY_MAX_EVENTS:
        raise Unprocessable(f"More than {REPLAY_MAX_EVENTS} events since then; replay a shorter window.")
    if rows:
        now = utcnow()
        await session.execute(insert(WebhookDelivery), [
            {"id": new_id("delivery"), "event_id": event_id, "endpoint_id": endpoint.id, "event_type": type_,
             "trigger": "replay", "status": "pending", "attempts": 0, "next_attempt_at": now, "job_id": None,
             "created_at": now} for event_id, type_ in rows
        ])
        request_relay(session)
    return len(rows)


async def list_attempts(session: AsyncSession, endpoint: WebhookEndpoint, *, status: str | None,
                        event_type: str | None, limit: int | None,
                        starting_after: str | None) -> Page[WebhookAttempt]:
    stmt = select(WebhookAttempt).where(WebhookAttempt.endpoint_id == endpoint.id)
    if status is not None:
        stmt = stmt.where(WebhookAttempt.succeeded == (status == "succeeded"))
    if event_type is not None:
        stmt = stmt.where(WebhookAttempt.event_type == event_type)
    return await paginate(session, stmt, WebhookAttempt.id, limit=limit, starting_after=starting_after,
                          to_schema=lambda row: row)



# --- operations (for /metrics) ------------------------------------------------------------------

async def queue_stats(session: AsyncSession, now: datetime | None = None) -> tuple[int, int]:
    """(deliveries waiting to be sent or retried, failed attempts in the last hour)."""
    now = now or utcnow()
    pending = await session.scalar(select(func.count()).select_from(WebhookDelivery)
                                   .where(WebhookDelivery.status == "pending"))
    failed = await session.scalar(select(func.count()).select_from(WebhookAttempt)
                                  .where(WebhookAttempt.succeeded.is_(False),
                                         WebhookAttempt.at >= now - timedelta(hours=1)))
    return int(pending or 0), int(failed or 0)
