"""Stripe events this domain handles (dispatched by the billing domain's Stripe inbox)."""

from __future__ import annotations

from partners.connect.service import handle_account_updated

STRIPE_HANDLERS = [("account.updated", handle_account_updated)]
