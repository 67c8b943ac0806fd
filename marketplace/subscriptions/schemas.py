"""Request and response types for subscriptions and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    plan_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40, examples=["pln_01jd0000000000000000000000"])]


class ChangePlanIn(msgspec.Struct, forbid_unknown_fields=True):
    plan_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40, examples=["pln_01jd0000000000000000000000"])]


class SubscriptionOut(msgspec.Struct):
    id: str
    status: str
    plan_id: str
    current_period_start: datetime
    current_period_end: datetime
    api_id: str
    plan_version_id: str
    plan_name: str
    cancel_at_period_end: bool
    canceled_at: datetime | None
    created_at: datetime


class ApiKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    subscription_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["production"])] = "default"


class RotateIn(msgspec.Struct, forbid_unknown_fields=True):
    # How long the old key keeps working; default API_KEY_ROTATION_OVERLAP_HOURS (24 h).
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 24 * 3600)] | None = None


class ApiKeyCreatedOut(msgspec.Struct):
    id: str
    key: str  # shown only in this answer
    prefix: str
    name: str
    subscription_id: str
    created_at: datetime


class RotatedOut(msgspec.Struct):
    id: str
    key: str
    prefix: str
    name: str
    subscription_id: str
    created_at: datetime
    replaces: str
    old_key_expires_at: datetime


class ApiKeyOut(msgspec.Struct):
    id: str
    prefix: str
    name: str
    subscription_id: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
