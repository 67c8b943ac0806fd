"""Request and response types of API publishing: APIs, scopes, endpoints, plans, OpenAPI import.

Inputs forbid unknown fields. Money is integer minor units; unit prices are decimal strings of
minor units (`"0.1"` = a tenth of a cent), as in API.md. PATCH bodies use `msgspec.UNSET` for
"leave as is", so `null` can clear a nullable field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

EXAMPLE_TIME = "2026-11-21T21:00:00Z"


def ex(value: Any) -> msgspec.Meta:
    """An OpenAPI example for a field."""
    return msgspec.Meta(examples=[value])


# --- shared field types -------------------------------------------------------------------------

Slug = Annotated[str, msgspec.Meta(
    min_length=3, max_length=64, pattern=r"^[a-z0-9-]+$",
    description="Lowercase letters, digits and hyphens; unique across the platform; the gateway path "
                "(/gateway/{slug}/…). Cannot be changed.",
    examples=["acme-weather"])]
ApiName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["Acme Weather"])]
Description = Annotated[str, msgspec.Meta(max_length=20_000, examples=["Forecasts for 200,000 cities, hourly."])]
UpstreamUrl = Annotated[str, msgspec.Meta(
    min_length=1, max_length=2048,
    description="The base URL the gateway proxies to. Must resolve to a public address.",
    examples=["https://api.acme-weather.example"])]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 &/-]*$",
                                       description="Stored in lower case.",
                                       examples=["weather"])]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
                                  description="Stored in lower case.", examples=["forecast"])]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=20, examples=[["forecast", "climate"]])]
ScopeName = Annotated[str, msgspec.Meta(
    min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.-]*(:[a-z0-9_.-]+)*$", examples=["weather:read"])]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PathTemplate = Annotated[str, msgspec.Meta(
    min_length=1, max_length=512,
    description="A path template relative to the upstream URL, starting with '/'; parameters in braces.",
    examples=["/forecast/{city}"])]
Weight = Annotated[int, msgspec.Meta(ge=1, le=1_000_000, description="Metered units per call.", examples=[1])]
MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=10**12, description="Integer minor units (cents).",
                                         examples=[4900])]
Units = Annotated[int, msgspec.Meta(ge=0, le=10**15, examples=[50000])]
UnitAmount = Annotated[str, msgspec.Meta(
    min_length=1, max_length=32,
    description="A non-negative decimal string of minor units per unit: \"0.1\" is a tenth of a cent.",
    examples=["0.1"])]


# --- APIs ---------------------------------------------------------------------------------------

class ApiIn(msgspec.Struct, forbid_unknown_fields=True):
    partner_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40, examples=["prt_01jd3k2x8v0m6q4r9t5w7y1z3a"])]
    slug: Slug
    name: ApiName
    upstream_url: UpstreamUrl
    description: Description = ""
    category: Category | None = None
    tags: Tags = msgspec.field(default_factory=list)


class ApiPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; `category: null` clears the category."""

    name: ApiName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    upstream_url: UpstreamUrl | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET


class ApiOut(msgspec.Struct):
    """An API as its partner sees it. `status`: draft → published ↔ draft; suspended by operators."""

    id: Annotated[str, ex("api_01jd3k2x8v0m6q4r9t5w7y1z3b")]
    partner_id: Annotated[str, ex("prt_01jd3k2x8v0m6q4r9t5w7y1z3a")]
    slug: Annotated[str, ex("acme-weather")]
    name: Annotated[str, ex("Acme Weather")]
    description: Annotated[str, ex("Forecasts for 200,000 cities, hourly.")]
    upstream_url: Annotated[str, ex("https://api.acme-weather.example")]
    category: Annotated[str | None, ex("weather")]
    tags: Annotated[list[str], ex(["forecast"])]
    status: Annotated[Literal["draft", "published", "suspended"], ex("draft")]
    revision: Annotated[int, msgspec.Meta(description="Grows with every change the gateway caches.", examples=[1])]
    published_at: Annotated[datetime | None, ex(None)]
    created_at: Annotated[datetime, ex(EXAMPLE_TIME)]
    updated_at: Annotated[datetime, ex(EXAMPLE_TIME)]
    gateway_path: Annotated[str, ex("/gateway/acme-weather")] = ""


class ProxySecretOut(msgspec.Struct):
    """Sent by the gateway to the upstream as `X-Marketplace-Proxy-Secret` on every call."""

    api_id: Annotated[str, msgspec.Meta(examples=["api_01jd3k2x8v0m6q4r9t5w7y1z3b"])]
    header: Annotated[str, msgspec.Meta(examples=["X-Marketplace-Proxy-Secret"])]
    secret: Annotated[str, msgspec.Meta(examples=["x3J9fQ2b7tXo0cWm0q2yJ6sYzq8kq1cQ6m7Jk2L9aBc"])]


class PublishProblemOut(msgspec.Struct):
    field: str
    message: str


class SuspendIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=1000, examples=["Upstream serves malware"])] = ""


# --- scopes and endpoints -----------------------------------------------------------------------

class ScopeIn(msgspec.Struct, forbid_unknown_fields=True):
    name: ScopeName
    description: Annotated[str, msgspec.Meta(max_length=1000, examples=["Read forecasts"])] = ""


class ScopeOut(msgspec.Struct):
    id: Annotated[str, ex("scp_01jd3k2x8v0m6q4r9t5w7y1z3c")]
    api_id: Annotated[str, ex("api_01jd3k2x8v0m6q4r9t5w7y1z3b")]
    name: Annotated[str, ex("weather:read")]
    description: Annotated[str, ex("Read forecasts")]
    created_at: Annotated[datetime, ex(EXAMPLE_TIME)]


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    method: Annotated[Method, msgspec.Meta(examples=["GET"])]
    path: PathTemplate
    scope: ScopeName | None = None
    weight: Weight = 1
    description: Annotated[str, msgspec.Meta(max_length=2000, examples=["The forecast for a city"])] = ""


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; `scope: null` makes the endpoint need no scope."""

    method: Annotated[Method, ex("POST")] | msgspec.UnsetType = msgspec.UNSET
    path: PathTemplate | msgspec.UnsetType = msgspec.UNSET
    scope: ScopeName | msgspec.UnsetType | None = msgspec.UNSET
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    description: Annotated[str, msgspec.Meta(max_length=2000, examples=["The forecast"])] | msgspec.UnsetType = \
        msgspec.UNSET


class EndpointOut(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(examples=["ep_01jd3k2x8v0m6q4r9t5w7y1z3d"])]
    api_id: Annotated[str, ex("api_01jd3k2x8v0m6q4r9t5w7y1z3b")]
    method: Annotated[str, ex("GET")]
    path: Annotated[str, ex("/forecast/{city}")]
    scope: Annotated[str | None, ex("weather:read")]
    weight: Annotated[int, ex(1)]
    description: Annotated[str, ex("The forecast for a city")]
    created_at: Annotated[datetime, ex(EXAMPLE_TIME)]


# --- plans --------------------------------------------------------------------------------------

class Tier(msgspec.Struct, forbid_unknown_fields=True):
    up_to: Annotated[int | None, msgspec.Meta(
        description="Upper bound (inclusive) of the tier in units; null on the last tier.", examples=[100000])]
    unit_amount: UnitAmount


UNIT_PRICING_EXAMPLES = [
    {"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"}, {"up_to": None, "unit_amount": "0.05"}]},
    {"model": "volume", "tiers": [{"up_to": 10000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]},
    {"model": "per_unit", "unit_amount": "0.2"},
    {"model": "package", "package_size": 1000, "unit_amount": "50"},
]


UNIT_PRICING_HELP = (
    "How units beyond included_units are charged. per_unit: each unit at unit_amount. graduated: each unit at the "
    "price of the tier it falls in. volume: every unit at the price of the tier the period's total falls in. "
    "package: blocks of package_size units, each started block at unit_amount (1,001 units with package_size "
    "1,000 are two packages). Absent or null: no usage charge."
)


class UnitPricing(msgspec.Struct, forbid_unknown_fields=True):
    """How units beyond `included_units` are charged.

    - `per_unit`: every unit at `unit_amount`.
    - `graduated`: each unit at the price of the tier it falls in (`tiers`, ascending `up_to`, the
      last `up_to: null`).
    - `volume`: every unit at the price of the tier the period's total falls in.
    - `package`: units in blocks of `package_size`, each started block at `unit_amount` (the price
      per package, rounded up: 1,001 units with `package_size` 1,000 are two packages).
    """

    model: Annotated[Literal["per_unit", "graduated", "volume", "package"], msgspec.Meta(
        description=UNIT_PRICING_HELP, examples=["graduated"])]
    tiers: Annotated[list[Tier], msgspec.Meta(
        description="graduated and volume only: ascending `up_to`, the last one null.",
        examples=[UNIT_PRICING_EXAMPLES[0]["tiers"]])] | None = None
    unit_amount: Annotated[UnitAmount, msgspec.Meta(
        description="per_unit: the price of one unit; package: the price of one package. Decimal string of minor "
                    "units.", examples=["0.2"])] | None = None
    package_size: Annotated[int, msgspec.Meta(
        ge=1, le=10**12, description="package only: units per package; a started package is charged whole.",
        examples=[1000])] | None = None


UnitPricingField = Annotated[UnitPricing, msgspec.Meta(description=UNIT_PRICING_HELP, examples=UNIT_PRICING_EXAMPLES)]


class Quota(msgspec.Struct, forbid_unknown_fields=True):
    """Units per billing period; `hard` refuses calls past it (429), soft lets them through and bills them."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=10**15, examples=[200000])]
    hard: Annotated[bool, ex(False)] = False


class RateLimit(msgspec.Struct, forbid_unknown_fields=True):
    per_second: Annotated[int, msgspec.Meta(ge=1, le=1_000_000, examples=[10])] | None = None
    per_minute: Annotated[int, msgspec.Meta(ge=1, le=60_000_000, examples=[300])] | None = None


PLAN_EXAMPLE: dict[str, Any] = {
    "name": "Pro", "currency": "usd", "monthly_fee": 4900, "included_units": 50000,
    "unit_pricing": UNIT_PRICING_EXAMPLES[0],
    "quota": {"limit": 200000, "hard": False},
    "rate_limit": {"per_second": 10, "per_minute": 300},
    "scopes": ["weather:read"],
}
PlanName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["Pro"])]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, examples=["usd"])]
PlanScopes = Annotated[list[ScopeName], msgspec.Meta(max_length=100, examples=[["weather:read"]])]


class PlanIn(msgspec.Struct, forbid_unknown_fields=True):
    """A plan. A free plan has no `monthly_fee` and no `unit_pricing`."""

    name: PlanName
    currency: Currency
    monthly_fee: MinorUnits = 0
    included_units: Units = 0
    unit_pricing: UnitPricingField | None = None
    quota: Quota | None = None
    rate_limit: RateLimit | None = None
    scopes: PlanScopes = msgspec.field(default_factory=list)


class PlanPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; `null` clears `unit_pricing`, `quota` or `rate_limit`. When the plan
    has subscribers, the change becomes a new version; existing subscribers keep theirs."""

    name: PlanName | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    monthly_fee: MinorUnits | msgspec.UnsetType = msgspec.UNSET
    included_units: Units | msgspec.UnsetType = msgspec.UNSET
    unit_pricing: UnitPricingField | msgspec.UnsetType | None = msgspec.UNSET
    quota: Quota | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: RateLimit | msgspec.UnsetType | None = msgspec.UNSET
    scopes: PlanScopes | msgspec.UnsetType = msgspec.UNSET


class PlanOut(msgspec.Struct):
    """A plan's current version. `version` grows when a plan with subscribers is edited."""

    id: Annotated[str, ex("pln_01jd3k2x8v0m6q4r9t5w7y1z3e")]
    api_id: Annotated[str, ex("api_01jd3k2x8v0m6q4r9t5w7y1z3b")]
    status: Annotated[Literal["active", "archived"], ex("active")]
    version: Annotated[int, ex(1)]
    version_id: Annotated[str, ex("plv_01jd3k2x8v0m6q4r9t5w7y1z3f")]
    name: Annotated[str, ex("Pro")]
    currency: Annotated[str, ex("usd")]
    monthly_fee: Annotated[int, ex(4900)]
    included_units: Annotated[int, ex(50000)]
    unit_pricing: Annotated[dict[str, Any] | None, msgspec.Meta(examples=UNIT_PRICING_EXAMPLES)]
    quota: Quota | None
    rate_limit: RateLimit | None
    scopes: Annotated[list[str], ex(["weather:read"])]
    created_at: Annotated[datetime, ex(EXAMPLE_TIME)]
    updated_at: Annotated[datetime, ex(EXAMPLE_TIME)]


# --- OpenAPI import -----------------------------------------------------------------------------

class SkippedOut(msgspec.Struct):
    kind: Annotated[Literal["scope", "endpoint"], ex("endpoint")]
    key: Annotated[str, msgspec.Meta(examples=["GET /forecast/{city}"])]
    reason: Annotated[str, msgspec.Meta(examples=["already exists"])]


class ImportCreatedOut(msgspec.Struct):
    scopes: list[ScopeOut]
    endpoints: list[EndpointOut]


class ImportOut(msgspec.Struct):
    created: ImportCreatedOut
    skipped: list[SkippedOut]
