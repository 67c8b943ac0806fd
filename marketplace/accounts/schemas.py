from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                                    examples=["ada@example.com"])]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=200, examples=["correct horse battery"])]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["Ada Lovelace"])]


class SignupIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class UserOut(msgspec.Struct):
    id: str
    email: str
    name: str


class SignupOut(msgspec.Struct):
    user: UserOut
    token: str


class LoginOut(msgspec.Struct):
    token: str
    expires_at: datetime


class MembershipOut(msgspec.Struct):
    partner_id: str
    partner_name: str
    role: str


class MeOut(msgspec.Struct):
    id: str
    email: str
    name: str
    is_operator: bool
    partners: list[MembershipOut]
    created_at: datetime


class TokenIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30


class TokenOut(msgspec.Struct):
    id: str
    name: str
    prefix: str
    kind: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreatedOut(msgspec.Struct):
    id: str
    name: str
    prefix: str
    token: str
    expires_at: datetime
