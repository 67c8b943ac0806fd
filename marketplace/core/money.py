"""Money: integer minor units plus an ISO 4217 code; unit prices as Decimal minor units.

Never floats. Rounding is done once per line, half-up to a whole minor unit (`round_minor`).
Splitting an amount into parts uses the largest-remainder method (`split`), so the parts always
sum exactly to the amount.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# Currencies we accept. Zero-decimal currencies (JPY, KRW) are minor-unit = major-unit, which
# integer minor units already express.
CURRENCIES = frozenset({"usd", "eur", "gbp", "cad", "aud", "jpy", "chf", "sek", "nok", "dkk", "nzd", "sgd", "inr", "brl", "mxn", "krw"})


def normalize_currency(code: str) -> str:
    value = code.strip().lower()
    if value not in CURRENCIES:
        raise ValueError(f"unsupported currency {code!r}; use one of {', '.join(sorted(CURRENCIES))}")
    return value


def parse_decimal_amount(value: str) -> Decimal:
    """A non-negative decimal string of minor units, like Stripe's unit_amount_decimal."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"{value!r} is not a decimal number") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{value!r} must be a non-negative decimal number of minor units")
    if amount.as_tuple().exponent < -12:  # type: ignore[operator]
        raise ValueError(f"{value!r} has more than 12 decimal places")
    return amount


def round_minor(amount: Decimal) -> int:
    """The one rounding rule: half-up to a whole minor unit, applied once per line."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def split(amount: int, weights: Sequence[int | Decimal]) -> list[int]:
    """Split `amount` in proportion to `weights` with the largest-remainder method.

    Each part gets the floor of its exact share; the units left over go one each to the parts with
    the largest fractional remainders (ties: earlier parts first). Parts sum exactly to `amount`.
    A negative amount splits as the mirror image of its absolute value.
    """
    if not weights:
        raise ValueError("split needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    total = sum(Decimal(w) for w in weights)
    if total == 0:
        raise ValueError("weights must not all be zero")
    sign = -1 if amount < 0 else 1
    magnitude = abs(amount)
    exact = [Decimal(magnitude) * Decimal(w) / total for w in weights]
    floors = [int(x) for x in exact]
    left = magnitude - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [sign * part for part in floors]


def percent_of(amount: int, percent: int | Decimal) -> tuple[int, int]:
    """Split `amount` into (percent share, rest) by the largest-remainder rule."""
    share, rest = split(amount, [Decimal(percent), Decimal(100) - Decimal(percent)])
    return share, rest
