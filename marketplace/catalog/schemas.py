"""The public catalog's answers: published APIs as consumers see them (no upstream, no secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from partners.publishing.schemas import EXAMPLE_TIME, Quota, RateLimit, ex


class CatalogPartnerOut(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(examples=["prt_01jd3k2x8v0m6q4r9t5w7y1z3a"])]
    name: Annotated[str, msgspec.Meta(examples=["Acme Weather Inc."])]


class CatalogApiOut(msgspec.Struct):
    """A published API in the catalog listing."""

    id: Annotated[str, msgspec.Meta(examples=["api_01jd3k2x8v0m6q4r9t5w7y1z3b"])]
    slug: Annotated[str, msgspec.Meta(examples=["acme-weather"])]
    name: Annotated[str, msgspec.Meta(examples=["Acme Weather"])]
    description: Annotated[str, msgspec.Meta(examples=["Forecasts for 200,000 cities, hourly."])]
    category: Annotated[str | None, msgspec.Meta(examples=["weather"])]
    tags: Annotated[list[str], msgspec.Meta(examples=[["forecast"]])]
    partner: CatalogPartnerOut
    published_at: Annotated[datetime | None, ex(EXAMPLE_TIME)]
    gateway_path: Annotated[str, msgspec.Meta(examples=["/gateway/acme-weather"])]


class CatalogScopeOut(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(examples=["weather:read"])]
    description: Annotated[str, msgspec.Meta(examples=["Read forecasts"])]


class CatalogEndpointOut(msgspec.Struct):
    id: Annotated[str, ex("ep_01jd3k2x8v0m6q4r9t5w7y1z3d")]
    method: Annotated[str, msgspec.Meta(examples=["GET"])]
    path: Annotated[str, msgspec.Meta(examples=["/forecast/{city}"])]
    scope: Annotated[str | None, msgspec.Meta(examples=["weather:read"])]
    weight: Annotated[int, msgspec.Meta(examples=[1])]
    description: Annotated[str, ex("The forecast for a city")]


class CatalogPlanOut(msgspec.Struct):
    """An active plan's current terms; subscribe with POST /v1/subscriptions {plan_id}."""

    id: Annotated[str, msgspec.Meta(examples=["pln_01jd3k2x8v0m6q4r9t5w7y1z3e"])]
    version: Annotated[int, ex(1)]
    name: Annotated[str, msgspec.Meta(examples=["Pro"])]
    currency: Annotated[str, msgspec.Meta(examples=["usd"])]
    monthly_fee: Annotated[int, msgspec.Meta(examples=[4900])]
    included_units: Annotated[int, msgspec.Meta(examples=[50000])]
    unit_pricing: Annotated[dict[str, Any] | None, msgspec.Meta(examples=[
        {"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"},
                                         {"up_to": None, "unit_amount": "0.05"}]}])]
    quota: Quota | None
    rate_limit: RateLimit | None
    scopes: Annotated[list[str], msgspec.Meta(examples=[["weather:read"]])]
    free: Annotated[bool, msgspec.Meta(description="No monthly fee and no usage charge.", examples=[False])]


class CatalogApiDetailOut(msgspec.Struct):
    """A published API with what a consumer needs to choose a plan and call it."""

    id: Annotated[str, ex("api_01jd3k2x8v0m6q4r9t5w7y1z3b")]
    slug: Annotated[str, ex("acme-weather")]
    name: Annotated[str, ex("Acme Weather")]
    description: Annotated[str, ex("Forecasts for 200,000 cities, hourly.")]
    category: Annotated[str | None, ex("weather")]
    tags: Annotated[list[str], ex(["forecast"])]
    partner: CatalogPartnerOut
    published_at: Annotated[datetime | None, ex(EXAMPLE_TIME)]
    gateway_path: Annotated[str, ex("/gateway/acme-weather")]
    plans: list[CatalogPlanOut]
    endpoints: list[CatalogEndpointOut]
    scopes: list[CatalogScopeOut]


class CategoryOut(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(examples=["weather"])]
    count: Annotated[int, msgspec.Meta(examples=[12])]
