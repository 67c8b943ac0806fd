"""Partner organisations and their members. `require_member` is the one tenancy check every
partner-owned resource goes through: a non-member learns nothing (404)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.cache import invalidate_after_commit
from marketplace.core.db import Base
from marketplace.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from marketplace.core.events import publish
from marketplace.core.ids import new_id
from marketplace.core.security import Principal
from marketplace.core.tenancy import partner_role
from partners.models import Membership, Partner


async def create_partner(session: AsyncSession, principal: Principal, name: str) -> tuple[Partner, Membership]:
    partner = Partner(id=new_id("partner"), name=name.strip())
    session.add(partner)
    await session.flush()
    member = Membership(id=new_id("member"), partner_id=partner.id, user_id=principal.user_id, role="owner")
    session.add(member)
    await session.flush()
    return partner, member


async def require_member(session: AsyncSession, principal: Principal, partner_id: str,
                         roles: tuple[str, ...] | None = None) -> tuple[Partner, str]:
    """The partner and the caller's role in it; 404 unless the caller is a member (with a role in
    `roles` when given). Operators are not members: they act through the admin endpoints."""
    role = await partner_role(session, principal, partner_id, roles)
    partner = await session.get(Partner, partner_id)
    assert partner is not None  # the membership row references it
    return partner, role


async def list_partners(session: AsyncSession, principal: Principal) -> list[tuple[Partner, str]]:
    rows = await session.execute(
        select(Partner, Membership.role).join(Membership, Membership.partner_id == Partner.id)
        .where(Membership.user_id == principal.user_id).order_by(Partner.id.desc())
    )
    return [(p, r) for p, r in rows]


async def list_members(session: AsyncSession, partner_id: str) -> list[tuple[Membership, str]]:
    from marketplace.core.db import Base

    users = Base.metadata.tables["users"]
    rows = await session.execute(
        select(Membership, users.c.email).join(users, users.c.id == Membership.user_id)
        .where(Membership.partner_id == partner_id).order_by(Membership.id)
    )
    return [(m, e) for m, e in rows]


def _only_owners_manage_owners(by_role: str) -> None:
    # An admin who could make owners (or remove them) could take the organisation over.
    if by_role != "owner":
        raise Forbidden("Only an owner can add or remove owners. Ask an owner of this partner.")


async def add_member(session: AsyncSession, partner_id: str, email: str, role: str,
                     by_role: str = "owner") -> tuple[Membership, str]:
    from marketplace.core.db import Base

    if role == "owner":
        _only_owners_manage_owners(by_role)
    users = Base.metadata.tables["users"]
    user_id = await session.scalar(select(users.c.id).where(users.c.email == email.strip().lower()))
    if user_id is None:
        raise Unprocessable(f"No account with the email {email!r}. Ask them to sign up first (POST /v1/signup).",
                            errors=[{"field": "email", "message": "no such account"}])
    member = Membership(id=new_id("member"), partner_id=partner_id, user_id=user_id, role=role)
    session.add(member)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{email} is already a member of this partner.") from exc
    return member, email


async def remove_member(session: AsyncSession, partner_id: str, member_id: str, by_role: str = "owner") -> None:
    member = await session.scalar(select(Membership).where(Membership.id == member_id,
                                                           Membership.partner_id == partner_id))
    if member is None:
        raise NotFound(f"No member {member_id!r} in this partner.")
    if member.role == "owner":
        _only_owners_manage_owners(by_role)
        # Lock the owners so that two owners removing each other at once cannot leave none.
        owners = len((await session.scalars(select(Membership.id).where(
            Membership.partner_id == partner_id, Membership.role == "owner").with_for_update())).all())
        if owners == 1:
            raise Conflict("A partner needs at least one owner. Make someone else owner first.")
    await session.delete(member)


async def set_partner_status(session: AsyncSession, partner_id: str, status: str, reason: str = "") -> Partner:
    """Operators suspend or reinstate a partner. A suspended partner sells nothing: its APIs leave
    the catalog, new subscriptions are refused, and the gateway refuses calls to its APIs."""
    partner = await session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    if partner.status != status:
        partner.status = status
        publish(session, f"partner.{'suspended' if status == 'suspended' else 'reinstated'}",
                {"partner_id": partner.id, "reason": reason}, partner_id=partner.id)
        apis = Base.metadata.tables["apis"]
        for slug in (await session.scalars(select(apis.c.slug).where(apis.c.partner_id == partner.id))).all():
            invalidate_after_commit(session, "api", slug)
        await session.flush()
    return partner
