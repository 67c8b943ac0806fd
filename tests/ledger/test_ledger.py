"""The ledger: balanced, immutable, and zero-sum after any sequence of money movements."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from marketplace.core.ids import new_id
from marketplace.ledger import service as ledger
from marketplace.ledger.models import PARTNER_PAYABLE, STRIPE_CLEARING
from tests.billing.factories import make_operator
from tests.helpers import Api, assert_problem


async def test_an_unbalanced_transaction_is_refused(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        with pytest.raises(ledger.UnbalancedTransaction):
            await ledger.post(session, kind="test", reference=new_id("ledger_tx"), currency="usd",
                              legs=[ledger.Leg(STRIPE_CLEARING, "", 100), ledger.Leg(PARTNER_PAYABLE, "prt_x", -99)])


async def test_the_database_refuses_unbalanced_or_edited_entries(sessionmaker: Any) -> None:
    ref = new_id("ledger_tx")
    async with sessionmaker.begin() as session:
        tx = await ledger.post(session, kind="test", reference=ref, currency="usd",
                               legs=[ledger.Leg(STRIPE_CLEARING, "", 100), ledger.Leg(PARTNER_PAYABLE, "prt_y", -100)])
    with pytest.raises(DBAPIError, match="immutable"):
        async with sessionmaker.begin() as session:
            await session.execute(text("UPDATE ledger_entries SET amount = 5 WHERE transaction_id = :t"), {"t": tx})
    with pytest.raises(DBAPIError, match="immutable"):
        async with sessionmaker.begin() as session:
            await session.execute(text("DELETE FROM ledger_entries WHERE transaction_id = :t"), {"t": tx})
    with pytest.raises(DBAPIError, match="unbalanced"):
        async with sessionmaker.begin() as session:  # bypassing post(): caught at commit
            account = await ledger.account_id(session, STRIPE_CLEARING, "", "usd")
            await session.execute(text("INSERT INTO ledger_transactions (id, kind, reference, currency, memo, created_at) "
                                       "VALUES (:i, 'test', :i, 'usd', '{}', now())"), {"i": "ltx_bad" + ref[-8:]})
            await session.execute(text("INSERT INTO ledger_entries (id, transaction_id, account_id, amount, currency, "
                                       "created_at) VALUES (:e, :i, :a, 7, 'usd', now())"),
                                  {"e": "le_bad" + ref[-8:], "i": "ltx_bad" + ref[-8:], "a": account})


async def test_posting_the_same_movement_twice_records_it_once(sessionmaker: Any) -> None:
    ref = new_id("ledger_tx")
    legs = [ledger.Leg(STRIPE_CLEARING, "", 5), ledger.Leg(PARTNER_PAYABLE, "prt_once", -5)]
    async with sessionmaker.begin() as session:
        assert await ledger.post(session, kind="test", reference=ref, currency="eur", legs=legs) is not None
        assert await ledger.post(session, kind="test", reference=ref, currency="eur", legs=legs) is None
        assert await ledger.partner_payable_balance(session, "prt_once", "eur") == 5


# ---- zero-sum property: random sequences of pay, partial refunds, disputes, voids ---------------

invoice_spec = st.fixed_dictionaries({
    "currency": st.sampled_from(["usd", "eur", "jpy"]),
    "partner": st.sampled_from(["a", "b", "c"]),
    "lines": st.lists(st.integers(0, 10**6), min_size=1, max_size=5),
    "percent": st.integers(0, 100),
})
operation = st.one_of(
    st.tuples(st.just("pay"), st.integers(0, 20)),
    st.tuples(st.just("void"), st.integers(0, 20)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.floats(0, 1)),
    st.tuples(st.just("dispute"), st.integers(0, 20), st.floats(0, 1)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(invoices=st.lists(invoice_spec, min_size=1, max_size=6), ops=st.lists(operation, max_size=25))
async def test_balances_sum_to_zero_and_partner_payables_equal_their_shares(
        sessionmaker: Any, invoices: list[dict[str, Any]], ops: list[tuple[Any, ...]]) -> None:
    run = new_id("ledger_tx")[-10:]
    state = []
    async with sessionmaker() as session:
        for i, spec in enumerate(invoices):
            total = sum(spec["lines"])
            inv = {"id": f"in_{run}_{i}", "consumer": f"usr_{run}_{i}", "partner": f"prt_{run}_{spec['partner']}",
                   "currency": spec["currency"], "total": total, "status": "open", "reversed": 0, "refunded": 0,
                   "disputed": 0, **dict(zip(("fee", "share"), ledger.split_lines(spec["lines"], spec["percent"]),
                                             strict=True))}
            assert inv["fee"] + inv["share"] == total
            await ledger.post_invoice_finalized(session, invoice_id=inv["id"], consumer_id=inv["consumer"],
                                                partner_id=inv["partner"], currency=inv["currency"], total=total)
            state.append(inv)
        for op in ops:
            inv = state[op[1] % len(state)]
            if op[0] == "pay" and inv["status"] == "open":
                await ledger.post_invoice_paid(session, invoice_id=inv["id"], consumer_id=inv["consumer"],
                                               partner_id=inv["partner"], currency=inv["currency"],
                                               total=inv["total"], fee=inv["fee"], share=inv["share"])
                inv["status"] = "paid"
            elif op[0] == "void" and inv["status"] == "open":
                await ledger.post_invoice_voided(session, invoice_id=inv["id"], consumer_id=inv["consumer"],
                                                 partner_id=inv["partner"], currency=inv["currency"], total=inv["total"])
                inv["status"] = "void"
            elif op[0] in ("refund", "dispute") and inv["status"] == "paid":
                room = inv["total"] - inv["reversed"]
                amount = int(room * op[2])
                if amount <= 0:
                    continue
                await ledger.post_reversal(session, kind=op[0], reference=f"{inv['id']}:{op[0]}:{inv['reversed']}",
                                           invoice_id=inv["id"], partner_id=inv["partner"], currency=inv["currency"],
                                           fee=inv["fee"], share=inv["share"], reversed_before=inv["reversed"],
                                           reversed_after=inv["reversed"] + amount)
                inv["reversed"] += amount
        await session.flush()
        ours = {inv["currency"] for inv in state}
        totals: dict[str, int] = {}
        for balance in await ledger.balances(session):
            totals[balance.currency] = totals.get(balance.currency, 0) + balance.balance
        assert all(totals.get(c, 0) == 0 for c in ours), totals
        expected: dict[tuple[str, str], int] = {}
        for inv in state:
            if inv["status"] == "paid":
                _, share_back = ledger.reversal_parts(inv["reversed"], inv["fee"], inv["share"])
                key = (inv["partner"], inv["currency"])
                expected[key] = expected.get(key, 0) + inv["share"] - share_back
        for (partner, currency), amount in expected.items():
            assert await ledger.partner_payable_balance(session, partner, currency) == amount
        await session.commit()  # the database's deferred balance check runs here too


async def test_a_full_reversal_in_many_partial_refunds_returns_exactly_the_split() -> None:
    fee, share = ledger.split_lines([333, 333, 334], 17)
    total = fee + share
    steps = [1, 7, 100, 250, total]
    back_fee = back_share = 0
    previous = 0
    for cumulative in steps:
        f0, s0 = ledger.reversal_parts(previous, fee, share)
        f1, s1 = ledger.reversal_parts(cumulative, fee, share)
        back_fee += f1 - f0
        back_share += s1 - s0
        previous = cumulative
    assert (back_fee, back_share) == (fee, share)


async def test_ledger_balance_is_for_operators_only(api: Api, sessionmaker: Any) -> None:
    user = await api.signup()
    assert_problem(await api.client.get("/v1/admin/ledger/balance", headers=user.headers), 404)
    operator = await make_operator(api, sessionmaker)
    body = (await api.client.get("/v1/admin/ledger/balance", headers=operator.headers)).json()
    assert all(t["sum"] == 0 for t in body["totals"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=20), st.integers(0, 100),
       st.integers(0, 2 * 10**10))
def test_the_split_and_its_reversal_always_sum_exactly(lines: list[int], percent: int, reversed_: int) -> None:
    fee, share = ledger.split_lines(lines, percent)
    assert fee + share == sum(lines) and fee >= 0 and share >= 0
    f, s = ledger.reversal_parts(reversed_, fee, share)
    assert f + s == min(reversed_, fee + share) and 0 <= f <= fee and 0 <= s <= share


async def test_payouts_can_read_payables_per_partner_and_per_invoice(sessionmaker: Any) -> None:
    from datetime import timedelta

    from marketplace.core.db import utcnow

    run = new_id("ledger_tx")[-8:]
    partner, early, late = f"prt_pay{run}", utcnow() - timedelta(days=10), utcnow()
    async with sessionmaker.begin() as session:
        for n, (total, at) in enumerate([(1000, early), (500, late)]):
            inv = f"in_pay{run}{n}"
            await ledger.post_invoice_finalized(session, invoice_id=inv, consumer_id="usr_x", partner_id=partner,
                                                currency="gbp", total=total, at=at)
            fee, share = ledger.split_lines([total], 20)
            await ledger.post_invoice_paid(session, invoice_id=inv, consumer_id="usr_x", partner_id=partner,
                                           currency="gbp", total=total, fee=fee, share=share, at=at)
        await ledger.post_reversal(session, kind="refund", reference=f"r{run}", invoice_id=f"in_pay{run}0",
                                   partner_id=partner, currency="gbp", fee=200, share=800, reversed_before=0,
                                   reversed_after=100)
    async with sessionmaker() as session:
        assert (await ledger.partner_payables(session))[(partner, "gbp")] == 800 + 400 - 80
        assert (await ledger.partner_payables(session, up_to=early))[(partner, "gbp")] == 800
        assert await ledger.partner_payable_balance(session, partner, "gbp", up_to=early) == 800
        assert await ledger.partner_payable_by_invoice(session, partner, "gbp") == {
            f"in_pay{run}0": 720, f"in_pay{run}1": 400}
