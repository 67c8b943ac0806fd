"""Partner organisations and their members."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.auth import require_operator
from marketplace.core.security import Principal
from marketplace.core.tenancy import MANAGERS
from partners import service
from partners.models import Membership, Partner
from partners.schemas import MemberIn, MemberOut, PartnerIn, PartnerOut, PartnerStatusIn


def partner_out(partner: Partner, role: str | None) -> PartnerOut:
    return PartnerOut(id=partner.id, name=partner.name, status=partner.status, connect_status=partner.connect_status,
                      charges_enabled=partner.charges_enabled, payouts_enabled=partner.payouts_enabled,
                      connect_requirements=list(partner.connect_requirements or []), role=role,
                      created_at=partner.created_at)


def member_out(member: Membership, email: str) -> MemberOut:
    return MemberOut(id=member.id, user_id=member.user_id, email=email, role=member.role, created_at=member.created_at)


class PartnerController(Controller):
    path = "/v1/partners"
    tags = ["partners"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createPartner",
          summary="Create a partner organisation (you become its owner)")
    async def create(self, data: PartnerIn, principal: Principal, db_session: AsyncSession) -> PartnerOut:
        partner, member = await service.create_partner(db_session, principal, data.name)
        return partner_out(partner, member.role)

    @get("/", operation_id="listPartners", summary="Partners you are a member of")
    async def list_partners(self, principal: Principal, db_session: AsyncSession) -> list[PartnerOut]:
        return [partner_out(p, r) for p, r in await service.list_partners(db_session, principal)]

    @get("/{partner_id:str}", operation_id="getPartner", summary="A partner you are a member of")
    async def get_partner(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> PartnerOut:
        partner, role = await service.require_member(db_session, principal, partner_id)
        return partner_out(partner, role)

    @get("/{partner_id:str}/members", operation_id="listPartnerMembers", summary="The partner's members")
    async def members(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> list[MemberOut]:
        await service.require_member(db_session, principal, partner_id)
        return [member_out(m, e) for m, e in await service.list_members(db_session, partner_id)]

    @post("/{partner_id:str}/members", status_code=HTTP_201_CREATED, operation_id="addPartnerMember",
          summary="Add a member by email (owners and admins)")
    async def add_member(self, partner_id: str, data: MemberIn, principal: Principal,
                         db_session: AsyncSession) -> MemberOut:
        _, role = await service.require_member(db_session, principal, partner_id, MANAGERS)
        member, email = await service.add_member(db_session, partner_id, data.email, data.role, by_role=role)
        return member_out(member, email)

    @delete("/{partner_id:str}/members/{member_id:str}", operation_id="removePartnerMember",
            summary="Remove a member (owners and admins)")
    async def remove_member(self, partner_id: str, member_id: str, principal: Principal,
                            db_session: AsyncSession) -> None:
        _, role = await service.require_member(db_session, principal, partner_id, MANAGERS)
        await service.remove_member(db_session, partner_id, member_id, by_role=role)


class AdminPartnerController(Controller):
    path = "/v1/admin/partners"
    tags = ["admin"]

    @post("/{partner_id:str}/suspend", status_code=HTTP_200_OK, operation_id="suspendPartner",
          summary="Operators: suspend a partner (its APIs leave the catalog and the gateway refuses them)")
    async def suspend(self, partner_id: str, principal: Principal, db_session: AsyncSession,
                      data: PartnerStatusIn | None = None) -> PartnerOut:
        require_operator(principal)
        partner = await service.set_partner_status(db_session, partner_id, "suspended", data.reason if data else "")
        return partner_out(partner, None)

    @post("/{partner_id:str}/unsuspend", status_code=HTTP_200_OK, operation_id="unsuspendPartner",
          summary="Operators: reinstate a suspended partner")
    async def unsuspend(self, partner_id: str, principal: Principal, db_session: AsyncSession) -> PartnerOut:
        require_operator(principal)
        return partner_out(await service.set_partner_status(db_session, partner_id, "active"), None)


ROUTES = [PartnerController, AdminPartnerController]
