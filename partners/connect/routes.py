"""Stripe Connect onboarding for partners (owners and admins)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.security import Principal
from marketplace.core.tenancy import MANAGERS
from partners.connect import service
from partners.connect.schemas import ConnectStatusOut, OnboardingOut
from partners.service import require_member


class ConnectController(Controller):
    path = "/v1/partners/{partner_id:str}/connect"
    tags = ["partners"]

    @post("/onboarding", status_code=HTTP_200_OK, operation_id="connectOnboarding",
          summary="A fresh Stripe account link to onboard the partner's Express account")
    async def onboarding(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> OnboardingOut:
        partner, _ = await require_member(db_session, principal, partner_id, MANAGERS)
        url, account_id, expires_at = await service.onboarding_link(db_session, partner)
        return OnboardingOut(url=url, account_id=account_id, expires_at=expires_at)

    @get("/", operation_id="connectStatus", summary="The partner's Connect status and what Stripe still needs")
    async def status(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> ConnectStatusOut:
        partner, _ = await require_member(db_session, principal, partner_id)
        return ConnectStatusOut(partner_id=partner.id, account_id=partner.stripe_account_id,
                                connect_status=partner.connect_status, charges_enabled=partner.charges_enabled,
                                payouts_enabled=partner.payouts_enabled,
                                requirements=list(partner.connect_requirements or []))


ROUTES = [ConnectController]
