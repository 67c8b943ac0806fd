"""Ledger response types."""

from __future__ import annotations

import msgspec


class AccountBalance(msgspec.Struct):
    kind: str
    owner_id: str
    currency: str
    balance: int  # debit positive, credit negative; all accounts of a currency sum to zero


class CurrencyTotal(msgspec.Struct):
    currency: str
    sum: int  # always 0: the proof that every transaction balanced


class LedgerBalanceOut(msgspec.Struct):
    accounts: list[AccountBalance]
    totals: list[CurrencyTotal]
