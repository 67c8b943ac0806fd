"""The rating engine: golden cases per pricing model, and properties that hold for any plan."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.billing.rating import EndpointUsage, PricingError, Terms, quote, rate

GRADUATED = {"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"},
                                             {"up_to": None, "unit_amount": "0.05"}]}
VOLUME = {"model": "volume", "tiers": [{"up_to": 1000, "unit_amount": "2"}, {"up_to": 10000, "unit_amount": "1.5"},
                                       {"up_to": None, "unit_amount": "1"}]}


def terms(**kw) -> Terms:  # type: ignore[no-untyped-def]
    kw.setdefault("currency", "usd")
    return Terms.parse(**kw)


def usage(*units: int) -> list[EndpointUsage]:
    return [EndpointUsage(endpoint_id=f"ep_{i}", method="GET", path=f"/e{i}", calls=u, units=u)
            for i, u in enumerate(units)]


def test_free_plan_costs_nothing_whatever_the_usage() -> None:
    r = rate(terms(), usage(10**9))
    assert r.total == 0 and r.units == 10**9
    assert rate(terms(), []).lines == ()


def test_flat_fee_plan_charges_the_fee_even_with_zero_usage() -> None:
    r = rate(terms(monthly_fee=4900, name="Pro"), [])
    assert r.total == 4900 and [line.kind for line in r.lines] == ["plan_fee"]


@pytest.mark.parametrize(("units", "expected"), [(0, 0), (1, 0), (3, 0), (5, 1), (10, 1), (15, 2), (1001, 100)])
def test_per_unit_with_fractional_price_rounds_half_up_once(units: int, expected: int) -> None:
    # 0.1 minor unit each: 5 units = 0.5 → 1 (half-up), 15 = 1.5 → 2, 1001 = 100.1 → 100
    assert rate(terms(unit_pricing={"model": "per_unit", "unit_amount": "0.1"}), usage(units)).total == expected


def test_rounding_is_once_per_line_not_per_endpoint() -> None:
    # three endpoints of 5 units at 0.1: per-endpoint rounding would give 3, the rule gives round(1.5) = 2
    r = rate(terms(unit_pricing={"model": "per_unit", "unit_amount": "0.1"}), usage(5, 5, 5))
    assert r.total == 2 and sorted(line.amount for line in r.lines) == [0, 1, 1]


@pytest.mark.parametrize(("units", "expected"), [
    (0, 4900), (50000, 4900), (50001, 4900), (50005, 4901),            # included units, then 0.1 each
    (150000, 4900 + 10000), (150001, 4900 + 10000),                  # tier boundary: 100,000 billable
    (150010, 4900 + 10000 + 1), (250000, 4900 + 10000 + 5000),
])
def test_graduated_with_included_units_and_tier_boundaries(units: int, expected: int) -> None:
    t = terms(monthly_fee=4900, included_units=50000, unit_pricing=GRADUATED)
    assert rate(t, usage(units)).total == expected


@pytest.mark.parametrize(("units", "expected"), [(0, 0), (1000, 2000), (1001, 1502), (10000, 15000),
                                                 (10001, 10001)])
def test_volume_prices_every_unit_at_the_tier_reached(units: int, expected: int) -> None:
    assert rate(terms(unit_pricing=VOLUME), usage(units)).total == expected


def test_tier_flat_amounts_are_added_once_per_tier_reached() -> None:
    t = terms(unit_pricing={"model": "graduated", "tiers": [{"up_to": 10, "unit_amount": "0", "flat_amount": 500},
                                                            {"up_to": None, "unit_amount": "1", "flat_amount": 100}]})
    assert rate(t, usage(0)).total == 0
    assert rate(t, usage(10)).total == 500
    assert rate(t, usage(11)).total == 601


@pytest.mark.parametrize(("units", "expected"), [(0, 0), (1, 500), (1000, 500), (1001, 1000), (2500, 1500)])
def test_package_charges_per_started_package(units: int, expected: int) -> None:
    t = terms(unit_pricing={"model": "package", "package_size": 1000, "unit_amount": "500"})
    assert rate(t, usage(units)).total == expected


def test_soft_quota_overage_is_billed_and_reported() -> None:
    t = terms(included_units=100, quota_limit=1000, quota_hard=False,
              unit_pricing={"model": "per_unit", "unit_amount": "2"})
    r = rate(t, usage(1500))
    assert r.over_quota_units == 500 and r.billable_units == 1400 and r.total == 2800


def test_units_past_a_hard_quota_are_not_billed() -> None:
    t = terms(quota_limit=1000, quota_hard=True, unit_pricing={"model": "per_unit", "unit_amount": "2"})
    assert rate(t, usage(1003)).total == 2000


def test_fractional_tier_prices_sum_exactly_before_rounding() -> None:
    t = terms(unit_pricing={"model": "graduated", "tiers": [{"up_to": 3, "unit_amount": "0.333"},
                                                            {"up_to": None, "unit_amount": "0.0005"}]})
    # 3 x 0.333 + 2 x 0.0005 = 1.000 → 1
    assert rate(t, usage(5)).total == 1
    # 0.999 + 1000 x 0.0005 = 1.499 → 1; 0.999 + 1002 x 0.0005 = 1.500 → 2 (half-up, once)
    assert rate(t, usage(1003)).total == 1
    assert rate(t, usage(1005)).total == 2
    assert rate(t, usage(2003)).exact_usage_amount == Decimal("1.999")


def test_prorated_fee_is_one_rounded_line() -> None:
    r = rate(terms(monthly_fee=1000), [], fee_fraction=Decimal(1) / Decimal(3))
    assert r.total == 333 and "prorated" in r.lines[0].description


def test_invalid_pricing_is_refused_with_a_reason() -> None:
    for bad in [{"model": "bogus"}, {"model": "per_unit"}, {"model": "per_unit", "unit_amount": "-1"},
                {"model": "graduated", "tiers": []},
                {"model": "graduated", "tiers": [{"up_to": None, "unit_amount": "1"}, {"up_to": 5, "unit_amount": "1"}]},
                {"model": "volume", "tiers": [{"up_to": 5, "unit_amount": "1"}, {"up_to": 5, "unit_amount": "1"}]},
                {"model": "package", "package_size": 0, "unit_amount": "1"}]:
        with pytest.raises(PricingError):
            terms(unit_pricing=bad)


def test_snapshot_round_trips() -> None:
    t = terms(monthly_fee=100, included_units=5, unit_pricing=GRADUATED, quota_limit=9, quota_hard=True, name="X")
    assert Terms.from_snapshot(t.snapshot()) == t


# ---- properties -------------------------------------------------------------------------------

prices = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def tiered(draw: st.DrawFn, model: str, decreasing: bool = False) -> Terms:
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=4))))
    amounts = [draw(prices) for _ in range(len(bounds) + 1)]
    if decreasing:
        amounts.sort(reverse=True)
    tiers = [{"up_to": b, "unit_amount": str(a)} for b, a in zip(bounds, amounts, strict=False)]
    tiers.append({"up_to": None, "unit_amount": str(amounts[-1])})
    return terms(unit_pricing={"model": model, "tiers": tiers}, included_units=draw(st.integers(0, 1000)),
                 monthly_fee=draw(st.integers(0, 10**6)))


any_terms = st.one_of(
    tiered("graduated"), tiered("volume"),
    st.builds(lambda p, i: terms(unit_pricing={"model": "per_unit", "unit_amount": str(p)}, included_units=i),
              prices, st.integers(0, 1000)),
    st.builds(lambda p, s: terms(unit_pricing={"model": "package", "package_size": s, "unit_amount": str(p)}),
              prices, st.integers(1, 10**4)),
)
endpoint_units = st.lists(st.integers(0, 10**7), max_size=6)


@settings(max_examples=200, deadline=None)
@given(any_terms, endpoint_units)
def test_totals_are_never_negative_and_lines_sum_to_the_total(t: Terms, units: list[int]) -> None:
    r = rate(t, usage(*units))
    assert r.total >= 0 and all(line.amount >= 0 for line in r.lines)
    assert r.total == r.plan_fee + r.usage_amount
    assert sum(line.amount for line in r.lines if line.kind == "usage") == r.usage_amount
    assert abs(r.usage_amount - r.exact_usage_amount) <= Decimal("0.5")


@settings(max_examples=200, deadline=None)
@given(st.one_of(tiered("graduated"),
                 st.builds(lambda p: terms(unit_pricing={"model": "per_unit", "unit_amount": str(p)}), prices),
                 st.builds(lambda p, s: terms(unit_pricing={"model": "package", "package_size": s,
                                                            "unit_amount": str(p)}), prices, st.integers(1, 100))),
       st.integers(0, 10**7), st.integers(0, 10**6))
def test_more_units_never_cost_less_for_per_unit_graduated_and_package(t: Terms, units: int, more: int) -> None:
    assert quote(t, units + more).total >= quote(t, units).total


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(0, 10**7))
def test_volume_never_costs_more_than_graduated_when_tier_prices_fall(data: st.DataObject, units: int) -> None:
    g = data.draw(tiered("graduated", decreasing=True))
    v = Terms.parse(currency="usd", monthly_fee=g.monthly_fee, included_units=g.included_units,
                    unit_pricing={**(g.unit_pricing() or {}), "model": "volume"})
    assert quote(v, units).total <= quote(g, units).total


@settings(max_examples=100, deadline=None)
@given(any_terms, endpoint_units)
def test_how_usage_is_spread_over_endpoints_does_not_change_the_total(t: Terms, units: list[int]) -> None:
    assert rate(t, usage(*units)).total == quote(t, sum(units)).total


def test_periods_follow_the_subscription_anchor_without_drifting() -> None:
    from datetime import UTC, datetime

    from marketplace.billing.service import next_period

    anchor = datetime(2026, 1, 31, 9, tzinfo=UTC)
    ends = []
    end = datetime(2026, 2, 28, 9, tzinfo=UTC)
    for _ in range(3):
        _, end = next_period(anchor, end)
        ends.append(end.date().isoformat())
    assert ends == ["2026-03-31", "2026-04-30", "2026-05-31"]
    off_grid = datetime(2026, 6, 15, tzinfo=UTC)
    assert next_period(anchor, off_grid) == (off_grid, datetime(2026, 7, 15, tzinfo=UTC))
