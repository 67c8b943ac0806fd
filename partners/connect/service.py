"""Stripe Connect onboarding: one Express account per partner (transfers capability), fresh
single-use account links, and `account.updated` keeping what Stripe says about the account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.events import publish
from marketplace.core.ids import new_id
from marketplace.core.stripe import idempotency_key, stripe_client
from marketplace.settings import get_settings
from partners.models import Partner


async def onboarding_link(session: AsyncSession, partner: Partner) -> tuple[str, str, int]:
    """Create the partner's Express account on first use, then a new account link (they are
    single use and expire after minutes, so every call makes a fresh one)."""
    client = stripe_client()
    if partner.stripe_account_id is None:
        account = await client.v1.accounts.create_async(
            {
                "type": "express",
                "capabilities": {"transfers": {"requested": True}},
                "business_profile": {"name": partner.name},
                "metadata": {"partner_id": partner.id},
            },
            # Keyed on the partner: a retried first call can never create a second account.
            options={"idempotency_key": idempotency_key("connect-account", partner.id)},
        )
        partner.stripe_account_id = account.id
        partner.connect_status = "pending"
        await session.flush()
    base = get_settings().base_url.rstrip("/")
    link = await client.v1.account_links.create_async(
        {
            "account": partner.stripe_account_id,
            "type": "account_onboarding",
            "refresh_url": f"{base}/partner/{partner.id}?connect=refresh",
            "return_url": f"{base}/partner/{partner.id}?connect=return",
        },
        options={"idempotency_key": idempotency_key("account-link", new_id("request"))},
    )
    return link.url, partner.stripe_account_id, int(link.expires_at)


def connect_status(*, payouts_enabled: bool, charges_enabled: bool, requirements: list[str]) -> str:
    if payouts_enabled:
        return "enabled"
    if requirements:
        return "restricted"
    return "pending"


async def handle_account_updated(session: AsyncSession, event: dict[str, Any]) -> None:
    """Stripe `account.updated`: record capabilities and what Stripe still needs."""
    account = event["data"]["object"]
    partner = await session.scalar(select(Partner).where(Partner.stripe_account_id == account["id"]).with_for_update())
    if partner is None:
        return  # not one of ours (or deleted): nothing to record
    requirements = sorted((account.get("requirements") or {}).get("currently_due") or [])
    before = (partner.connect_status, partner.charges_enabled, partner.payouts_enabled, list(partner.connect_requirements))
    partner.charges_enabled = bool(account.get("charges_enabled"))
    partner.payouts_enabled = bool(account.get("payouts_enabled"))
    partner.connect_requirements = requirements
    partner.connect_status = connect_status(payouts_enabled=partner.payouts_enabled,
                                            charges_enabled=partner.charges_enabled, requirements=requirements)
    after = (partner.connect_status, partner.charges_enabled, partner.payouts_enabled, requirements)
    if after != before:
        publish(session, "partner.connect_updated", {
            "partner_id": partner.id, "connect_status": partner.connect_status,
            "charges_enabled": partner.charges_enabled, "payouts_enabled": partner.payouts_enabled,
            "requirements": requirements,
        }, partner_id=partner.id)
