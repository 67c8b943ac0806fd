"""Tenancy: the one check that a caller may act for a partner organisation.

Lives in core (on the `partner_members` table) so that every domain, webhooks included, scopes
partner-owned rows the same way. A non-member learns nothing: 404, never 403.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.db import Base
from marketplace.core.errors import NotFound
from marketplace.core.security import Principal

MANAGERS = ("owner", "admin")


async def partner_role(session: AsyncSession, principal: Principal, partner_id: str,
                       roles: tuple[str, ...] | None = None) -> str:
    """The caller's role in the partner; NotFound unless they are a member (with one of `roles`)."""
    members = Base.metadata.tables["partner_members"]
    role = await session.scalar(
        select(members.c.role).where(members.c.partner_id == partner_id, members.c.user_id == principal.user_id)
    )
    if role is None:
        raise NotFound(f"No partner {partner_id!r} that you are a member of. List yours with GET /v1/partners.")
    if roles is not None and role not in roles:
        raise NotFound(f"No partner {partner_id!r} that you manage (your role is {role!r}; "
                       f"this needs {' or '.join(roles)}).")
    return str(role)
