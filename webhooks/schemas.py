from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048, examples=["https://example.com/webhooks"])]
EventTypeName = Annotated[str, msgspec.Meta(min_length=1, max_length=80, examples=["subscription.created"])]
Description = Annotated[str, msgspec.Meta(max_length=500, examples=["Production receiver"])]


class Owner(msgspec.Struct, forbid_unknown_fields=True):
    """`{partner_id}` for a partner you are a member of; `{}` for yourself as a consumer."""

    partner_id: Annotated[str | None, msgspec.Meta(examples=["prt_01jd0000000000000000000000"])] = None


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    events: Annotated[list[EventTypeName], msgspec.Meta(min_length=1, max_length=50,
                                                        examples=[["subscription.created", "invoice.paid"]])]
    owner: Owner = msgspec.field(default_factory=Owner)
    description: Description = ""
    enabled: bool = True


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | None = None
    events: Annotated[list[EventTypeName], msgspec.Meta(min_length=1, max_length=50)] | None = None
    description: Description | None = None
    enabled: bool | None = None


class OwnerOut(msgspec.Struct):
    partner_id: str | None = None
    consumer_id: str | None = None


class EndpointOut(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    owner: OwnerOut
    description: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointCreatedOut(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    owner: OwnerOut
    description: str
    enabled: bool
    secret: Annotated[str, msgspec.Meta(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])]
    created_at: datetime


class SecretOut(msgspec.Struct):
    secret: str
    # Still signing (alongside `secret`) until `previous_secret_expires_at`, after a rotation.
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None


class AttemptOut(msgspec.Struct):
    id: str
    delivery_id: str
    event_id: str
    event_type: str
    attempt: int
    status: str  # succeeded | failed
    status_code: int | None
    error: str | None
    at: datetime
    latency_ms: int
    trigger: str
    response: str | None
    next_attempt_at: datetime | None


class ReplayIn(msgspec.Struct, forbid_unknown_fields=True):
    since: Annotated[str, msgspec.Meta(examples=["2026-11-20T00:00:00Z"],
                                       description="ISO 8601; events created at or after it are re-sent")]


class ReplayOut(msgspec.Struct):
    since: datetime
    events: int


class QueuedOut(msgspec.Struct):
    delivery_id: str
    event_id: str
    status: str = "pending"


class EventTypeOut(msgspec.Struct):
    type: str
    description: str
    owners: str
    example: dict[str, Any]
