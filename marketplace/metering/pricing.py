"""The usage estimate shown to consumers: a small pure function that billing's rating engine
replaces. Money stays integer minor units; unit prices are Decimal minor units; one rounding
(half-up) per estimate."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from marketplace.core.money import round_minor


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def usage_charge(pricing: dict[str, Any] | None, units: int) -> Decimal:
    """What `units` billable units (already net of included units) cost under `unit_pricing`."""
    if not pricing or units <= 0:
        return Decimal(0)
    model = pricing.get("model")
    if model == "per_unit":
        return units * _dec(pricing.get("unit_amount"))
    if model == "package":
        size = int(pricing.get("package_size") or pricing.get("size") or 1)
        amount = _dec(pricing.get("package_amount") or pricing.get("unit_amount"))
        return -(-units // size) * amount
    tiers = pricing.get("tiers") or []
    if model == "graduated":
        total, lower = Decimal(0), 0
        for tier in tiers:
            upper = tier.get("up_to")
            in_tier = units - lower if upper is None else max(0, min(units, int(upper)) - lower)
            if in_tier > 0:
                total += in_tier * _dec(tier.get("unit_amount")) + _dec(tier.get("flat_amount"))
            if upper is None or units <= int(upper):
                break
            lower = int(upper)
        return total
    if model == "volume":
        for tier in tiers:
            upper = tier.get("up_to")
            if upper is None or units <= int(upper):
                return units * _dec(tier.get("unit_amount")) + _dec(tier.get("flat_amount"))
        return Decimal(0)
    return Decimal(0)


# Billing's rating engine, installed by the billing domain when the app starts (a higher layer
# injects it, see docs/architecture.md), so the estimate and the invoice can never disagree.
_estimator: Callable[[Any, int], int] | None = None


def set_estimator(estimator: Callable[[Any, int], int] | None) -> None:
    global _estimator
    _estimator = estimator


def estimate_amount(plan_version: Any, units: int) -> int:
    """Monthly fee plus the usage charge on units beyond the plan's included units (minor units)."""
    if _estimator is not None:
        return _estimator(plan_version, units)
    overage = max(0, units - int(plan_version.included_units or 0))
    return int(plan_version.monthly_fee or 0) + round_minor(usage_charge(plan_version.unit_pricing, overage))
