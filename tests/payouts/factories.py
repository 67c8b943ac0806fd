"""Test data for payouts: onboarded partners (through Connect's account.updated handler), paid
invoices posted to the ledger with a chosen age, and a small fake of Stripe's transfers API
behind respx (create with idempotency keys, list by transfer_group, failures on demand)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.billing.models import Invoice, InvoiceLine
from marketplace.core.db import utcnow
from marketplace.core.ids import new_id
from marketplace.ledger import service as ledger
from partners.connect.service import handle_account_updated
from partners.models import Partner
from tests.billing.factories import World, form, make_world, stripe_event
from tests.helpers import Api, User


@dataclass
class Seller:
    owner: User
    partner_id: str
    account: str | None
    world: World


async def seller(api: Api, sessionmaker: async_sessionmaker[AsyncSession], *, onboarded: bool = True,
                 name: str = "Acme") -> Seller:
    owner = await api.signup("Partner")
    partner_id = (await api.partner(owner, name=name))["id"]
    account = None
    if onboarded:
        account = "acct_" + secrets.token_hex(8)
        async with sessionmaker.begin() as session:
            await session.execute(update(Partner).where(Partner.id == partner_id).values(stripe_account_id=account))
            await handle_account_updated(session, stripe_event("account.updated", {
                "id": account, "object": "account", "charges_enabled": True, "payouts_enabled": True,
                "requirements": {"currently_due": []}}))
    now = utcnow()
    world = await make_world(api, sessionmaker, period_start=now - timedelta(days=60), period_end=now + timedelta(days=1),
                             partner_owner=owner, partner_id=partner_id)
    return Seller(owner, partner_id, account, world)


async def paid_invoice(sessionmaker: async_sessionmaker[AsyncSession], who: Seller, *, total: int,
                       currency: str = "usd", days_ago: float = 10, fee_percent: int = 20) -> Invoice:
    """A paid invoice `days_ago` old, posted to the ledger as billing posts it (finalized, then paid)."""
    at = utcnow() - timedelta(days=days_ago)
    fee, share = ledger.split_lines([total], fee_percent)
    start = at - timedelta(days=30, seconds=secrets.randbelow(10**6))
    invoice = Invoice(id=new_id("invoice"), consumer_id=who.world.consumer.id, subscription_id=who.world.subscription_id,
                      partner_id=who.partner_id, api_id=who.world.api_id, plan_version_id=who.world.plan_version_id,
                      status="paid", currency=currency, period_start=start, period_end=at, total=total, terms={},
                      platform_fee_percent=fee_percent, platform_fee_amount=fee, partner_amount=share, paid_at=at,
                      finalized_at=at, stripe_charge_id="ch_" + secrets.token_hex(8))
    async with sessionmaker.begin() as session:
        session.add(invoice)
        await session.flush()
        session.add(InvoiceLine(id=new_id("invoice_line"), invoice_id=invoice.id, position=0, kind="plan_fee",
                                description="Pro", quantity=1, amount=total, period_start=start, period_end=at))
        await ledger.post_invoice_finalized(session, invoice_id=invoice.id, consumer_id=who.world.consumer.id,
                                            partner_id=who.partner_id, currency=currency, total=total, at=at)
        await ledger.post_invoice_paid(session, invoice_id=invoice.id, consumer_id=who.world.consumer.id,
                                       partner_id=who.partner_id, currency=currency, total=total, fee=fee, share=share,
                                       at=at)
    return invoice


@dataclass
class FakeTransfers:
    """Stripe's /v1/transfers as respx routes: idempotent creates, list by transfer_group."""

    router: respx.MockRouter
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[str, str] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)  # destination -> Stripe error message

    def __post_init__(self) -> None:
        self.create = self.router.post("/v1/transfers").mock(side_effect=self._create)
        self.list = self.router.get("/v1/transfers").mock(side_effect=self._list)

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = form(request)
        key = request.headers.get("idempotency-key", "")
        if key in self.by_key:
            return httpx.Response(200, json=self.transfers[self.by_key[key]])
        if body["destination"] in self.failing:
            return httpx.Response(400, json={"error": {
                "type": "invalid_request_error", "code": "insufficient_capabilities_for_transfer",
                "message": self.failing[body["destination"]], "param": "destination"}})
        transfer = {"id": "tr_" + secrets.token_hex(8), "object": "transfer", "amount": int(body["amount"]),
                    "currency": body["currency"], "destination": body["destination"],
                    "transfer_group": body.get("transfer_group"), "amount_reversed": 0, "reversed": False,
                    "metadata": {"payout_line_id": body.get("metadata[payout_line_id]")}}
        self.transfers[transfer["id"]] = transfer
        self.by_key[key] = transfer["id"]
        return httpx.Response(200, json=transfer)

    def _list(self, request: httpx.Request) -> httpx.Response:
        group = request.url.params.get("transfer_group")
        data = [t for t in self.transfers.values() if t["transfer_group"] == group]
        return httpx.Response(200, json={"object": "list", "url": "/v1/transfers", "has_more": False, "data": data})

    def creates_for(self, line_id: str) -> list[Any]:
        return [c for c in self.create.calls if form(c.request).get("metadata[payout_line_id]") == line_id]
