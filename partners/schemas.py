from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Role = Literal["owner", "admin", "developer"]


class PartnerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["Acme Weather"])]


class PartnerOut(msgspec.Struct):
    id: str
    name: str
    status: str
    connect_status: str
    charges_enabled: bool
    payouts_enabled: bool
    connect_requirements: list[str]
    role: str | None
    created_at: datetime


class MemberIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
    role: Role = "developer"


class MemberOut(msgspec.Struct):
    id: str
    user_id: str
    email: str
    role: str
    created_at: datetime


class PartnerStatusIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500, examples=["Repeated chargebacks under review"])] = ""
