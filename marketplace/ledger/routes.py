"""Operators read the ledger: every account's balance, and the zero sum per currency."""

from __future__ import annotations

from litestar import Controller, get
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.auth import require_operator
from marketplace.core.security import Principal
from marketplace.ledger import service
from marketplace.ledger.schemas import AccountBalance, CurrencyTotal, LedgerBalanceOut


class LedgerController(Controller):
    path = "/v1/admin/ledger"
    tags = ["admin"]

    @get("/balance", operation_id="ledgerBalance", summary="Every ledger account's balance (they sum to zero per currency)")
    async def balance(self, principal: Principal, db_session: AsyncSession, currency: str | None = None) -> LedgerBalanceOut:
        require_operator(principal)
        rows = await service.balances(db_session, currency.lower() if currency else None)
        totals: dict[str, int] = {}
        for row in rows:
            totals[row.currency] = totals.get(row.currency, 0) + row.balance
        return LedgerBalanceOut(
            accounts=[AccountBalance(kind=r.kind, owner_id=r.owner_id, currency=r.currency, balance=r.balance) for r in rows],
            totals=[CurrencyTotal(currency=c, sum=s) for c, s in sorted(totals.items())])


ROUTES = [LedgerController]
