"""The rating engine: a pure function from a plan version's terms and a period's usage to fee lines.

No I/O. The same function answers the usage estimate, the invoice preview, the public price
calculator and the invoice itself, so they can never disagree.

Pricing models (`unit_pricing.model`, see API.md; units beyond `included_units` are "billable"):

- absent / null: no usage charge (with `monthly_fee == 0`: a free plan)
- `per_unit`  `{"unit_amount": "0.1"}`: billable x unit_amount
- `graduated` `{"tiers": [{"up_to": 100000, "unit_amount": "0.1", "flat_amount": 0}, {"up_to": null, …}]}`:
  each tier prices the units that fall inside it (like Stripe's graduated tiers); `flat_amount`
  (optional, minor units) is added once for every tier that is reached
- `volume`    same tiers: every billable unit is priced at the tier the total falls in (+ its flat_amount)
- `package`   `{"package_size": 1000, "unit_amount": "500"}` (`package_amount` is accepted too):
  a price per started package (billable units rounded up to whole packages)

Quotas: a soft quota lets calls through and they are billed like any other billable unit (the
result says how many units were over the quota); a hard quota refuses calls at the gateway, so
units past a hard limit that slipped through a race are not billed.

**Rounding rule (the only one):** every amount is computed exactly in `Decimal` minor units and
rounded half-up to a whole minor unit once per fee line (`core.money.round_minor`): once for the
(prorated) plan fee, once for the usage charge. The usage charge is then shared among the
endpoints that caused it in proportion to their units with the largest-remainder rule
(`core.money.split`), so the endpoint lines sum exactly to the rounded usage charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from marketplace.core.money import parse_decimal_amount, round_minor, split

MODELS = ("per_unit", "graduated", "volume", "package")


class PricingError(ValueError):
    """The plan's unit_pricing cannot be understood."""


@dataclass(frozen=True)
class Tier:
    up_to: int | None
    unit_amount: Decimal
    flat_amount: int = 0


@dataclass(frozen=True)
class Terms:
    """What rating needs from a plan version (also the invoice's snapshot of it)."""

    currency: str
    monthly_fee: int = 0
    included_units: int = 0
    model: str | None = None
    unit_amount: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    package_size: int = 1
    quota_limit: int | None = None
    quota_hard: bool = False
    name: str = ""

    @classmethod
    def parse(cls, *, currency: str, monthly_fee: int = 0, included_units: int = 0,
              unit_pricing: Mapping[str, Any] | None = None, quota_limit: int | None = None,
              quota_hard: bool = False, name: str = "") -> Terms:
        if monthly_fee < 0 or included_units < 0:
            raise PricingError("monthly_fee and included_units must not be negative")
        base = cls(currency=currency, monthly_fee=int(monthly_fee), included_units=int(included_units),
                   quota_limit=quota_limit, quota_hard=bool(quota_hard), name=name)
        if not unit_pricing or unit_pricing.get("model") in (None, "none", "free"):
            return base
        model = unit_pricing.get("model")
        if model not in MODELS:
            raise PricingError(f"unit_pricing.model must be one of {', '.join(MODELS)}")
        try:
            if model == "per_unit":
                return _replace(base, model=model, unit_amount=parse_decimal_amount(str(unit_pricing["unit_amount"])))
            if model == "package":
                size = int(unit_pricing.get("package_size") or unit_pricing.get("size") or 0)
                if size < 1:
                    raise PricingError("package pricing needs package_size >= 1")
                price = unit_pricing.get("unit_amount", unit_pricing.get("package_amount"))
                return _replace(base, model=model, package_size=size, unit_amount=parse_decimal_amount(str(price)))
            tiers = _parse_tiers(unit_pricing.get("tiers"))
            return _replace(base, model=model, tiers=tiers)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, PricingError):
                raise
            raise PricingError(f"unit_pricing for {model!r} is not valid: {exc}") from exc

    @classmethod
    def from_plan_version(cls, version: Any) -> Terms:
        return cls.parse(currency=version.currency, monthly_fee=version.monthly_fee,
                         included_units=version.included_units, unit_pricing=version.unit_pricing,
                         quota_limit=version.quota_limit, quota_hard=version.quota_hard, name=version.name)

    def unit_pricing(self) -> dict[str, Any] | None:
        if self.model is None:
            return None
        if self.model == "per_unit":
            return {"model": "per_unit", "unit_amount": str(self.unit_amount)}
        if self.model == "package":
            return {"model": "package", "package_size": self.package_size, "unit_amount": str(self.unit_amount)}
        return {"model": self.model, "tiers": [
            {"up_to": t.up_to, "unit_amount": str(t.unit_amount), "flat_amount": t.flat_amount} for t in self.tiers]}

    def snapshot(self) -> dict[str, Any]:
        """JSON for the invoice: the terms it was rated with, readable after the plan changes."""
        return {"name": self.name, "currency": self.currency, "monthly_fee": self.monthly_fee,
                "included_units": self.included_units, "unit_pricing": self.unit_pricing(),
                "quota": {"limit": self.quota_limit, "hard": self.quota_hard} if self.quota_limit is not None else None}

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Terms:
        quota = data.get("quota") or {}
        return cls.parse(currency=data["currency"], monthly_fee=data.get("monthly_fee", 0),
                         included_units=data.get("included_units", 0), unit_pricing=data.get("unit_pricing"),
                         quota_limit=quota.get("limit"), quota_hard=quota.get("hard", False), name=data.get("name", ""))


def _replace(terms: Terms, **changes: Any) -> Terms:
    values = {f: getattr(terms, f) for f in terms.__dataclass_fields__}
    values.update(changes)
    return Terms(**values)


def _parse_tiers(raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise PricingError("tiered pricing needs a non-empty list of tiers")
    tiers: list[Tier] = []
    previous = 0
    for i, item in enumerate(raw):
        up_to = item.get("up_to")
        last = i == len(raw) - 1
        if up_to is None and not last:
            raise PricingError("only the last tier may have up_to: null")
        if up_to is not None:
            up_to = int(up_to)
            if up_to <= previous:
                raise PricingError("tier up_to values must increase")
            previous = up_to
        flat = int(item.get("flat_amount") or 0)
        if flat < 0:
            raise PricingError("flat_amount must not be negative")
        tiers.append(Tier(up_to=up_to, unit_amount=parse_decimal_amount(str(item.get("unit_amount", "0"))),
                          flat_amount=flat))
    return tuple(tiers)


@dataclass(frozen=True)
class EndpointUsage:
    """Usage of one endpoint in a period (the shape metering's `usage_for_period` returns)."""

    endpoint_id: str | None
    method: str
    path: str
    calls: int
    units: int


@dataclass(frozen=True)
class FeeLine:
    kind: str  # plan_fee | usage
    description: str
    amount: int
    quantity: int = 1
    unit_amount: str | None = None  # decimal minor units, for display
    endpoint_id: str | None = None
    method: str | None = None
    path: str | None = None
    calls: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rating:
    currency: str
    lines: tuple[FeeLine, ...]
    units: int
    included_units: int
    billable_units: int
    over_quota_units: int
    plan_fee: int
    usage_amount: int
    exact_usage_amount: Decimal = field(compare=False, default=Decimal(0))

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def usage_charge(terms: Terms, billable: int) -> Decimal:
    """The exact (unrounded) usage charge for `billable` units, in Decimal minor units."""
    if billable <= 0 or terms.model is None:
        return Decimal(0)
    if terms.model == "per_unit":
        return terms.unit_amount * billable
    if terms.model == "package":
        packages = -(-billable // terms.package_size)
        return terms.unit_amount * packages
    if terms.model == "graduated":
        total = Decimal(0)
        lower = 0
        for tier in terms.tiers:
            upper = billable if tier.up_to is None else min(billable, tier.up_to)
            if upper > lower:
                total += tier.unit_amount * (upper - lower) + tier.flat_amount
            lower = tier.up_to if tier.up_to is not None else lower
            if tier.up_to is None or billable <= tier.up_to:
                break
        return total
    # volume: the tier the total falls in prices every unit
    for tier in terms.tiers:
        if tier.up_to is None or billable <= tier.up_to:
            return tier.unit_amount * billable + tier.flat_amount
    last = terms.tiers[-1]  # beyond a closed last tier: its price still applies
    return last.unit_amount * billable + last.flat_amount


def billable_units(terms: Terms, units: int) -> tuple[int, int]:
    """(billable units, units over the quota) for a period's metered units."""
    units = max(0, units)
    over_quota = max(0, units - terms.quota_limit) if terms.quota_limit is not None else 0
    counted = min(units, terms.quota_limit) if terms.quota_hard and terms.quota_limit is not None else units
    return max(0, counted - terms.included_units), over_quota


def rate(terms: Terms, usage: Sequence[EndpointUsage], *, fee_fraction: Decimal = Decimal(1),
         fee_description: str | None = None) -> Rating:
    """Rate one period. `fee_fraction` prorates the monthly fee (days used / days in the period)."""
    if fee_fraction < 0:
        raise ValueError("fee_fraction must not be negative")
    lines: list[FeeLine] = []
    plan_fee = round_minor(Decimal(terms.monthly_fee) * fee_fraction)
    if terms.monthly_fee:
        description = fee_description or f"{terms.name or 'Plan'} — monthly fee"
        if fee_fraction != 1:
            description += f" (prorated {fee_fraction.quantize(Decimal('0.0001'))})"
        lines.append(FeeLine(kind="plan_fee", description=description, amount=plan_fee))
    used = [u for u in usage if u.units > 0 or u.calls > 0]
    units = sum(max(0, u.units) for u in used)
    billable, over_quota = billable_units(terms, units)
    exact = usage_charge(terms, billable)
    usage_amount = round_minor(exact)
    weights = [max(0, u.units) for u in used]
    shares = split(usage_amount, weights) if used and sum(weights) > 0 else [0] * len(used)
    for u, share in zip(used, shares, strict=True):
        lines.append(FeeLine(kind="usage", description=f"{u.method} {u.path}", amount=share, quantity=u.units,
                             endpoint_id=u.endpoint_id, method=u.method, path=u.path, calls=u.calls))
    if usage_amount and not used:  # defensive: a charge with nobody to attribute it to
        lines.append(FeeLine(kind="usage", description="Usage", amount=usage_amount, quantity=units))
    return Rating(currency=terms.currency, lines=tuple(lines), units=units, included_units=terms.included_units,
                  billable_units=billable, over_quota_units=over_quota, plan_fee=plan_fee if terms.monthly_fee else 0,
                  usage_amount=usage_amount, exact_usage_amount=exact)


def quote(terms: Terms, units: int) -> Rating:
    """The public calculator: a month with `units` units on one notional endpoint."""
    usage = [EndpointUsage(endpoint_id=None, method="ANY", path="*", calls=units, units=units)] if units else []
    return rate(terms, usage)
