from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]
RedirectUri = Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern=r"^[^\x00-\x20\x7f]+$",
                                          examples=["https://app.example.com/callback"])]


class AppIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                                      examples=["Weather dashboard"])]
    redirect_uris: Annotated[list[RedirectUri], msgspec.Meta(max_length=10)] = []
    public: bool = False
    grant_types: Annotated[list[GrantType], msgspec.Meta(min_length=1, max_length=3)] | None = None


class AppOut(msgspec.Struct):
    id: str
    client_id: str
    name: str
    redirect_uris: list[str]
    public: bool
    grant_types: list[str]
    token_endpoint_auth_method: str
    secret_prefix: str | None
    created_at: datetime


class AppCreatedOut(msgspec.Struct):
    id: str
    client_id: str
    name: str
    redirect_uris: list[str]
    public: bool
    grant_types: list[str]
    token_endpoint_auth_method: str
    created_at: datetime
    client_secret: str | None = None  # shown only here (and on rotate-secret)


class SecretOut(msgspec.Struct):
    client_id: str
    client_secret: str


class GrantOut(msgspec.Struct):
    id: str
    app_id: str
    app_name: str
    scopes: list[str]
    created_at: datetime
    updated_at: datetime
