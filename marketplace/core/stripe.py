"""The one way to talk to Stripe: the official SDK's async client over httpx.

`STRIPE_API_BASE` points the SDK at another server (tests point it at respx). Every create call
must pass an idempotency key derived from our own row id: `idempotency_key(kind, row_id)`.
"""

from __future__ import annotations

from functools import lru_cache

import stripe

from marketplace.core.errors import ServiceUnavailable
from marketplace.settings import get_settings


def payments_disabled() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Payments are not configured on this platform: set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) "
        "to enable billing, Connect onboarding and payouts.",
        slug="payments-disabled",
        title="Payments disabled",
    )


@lru_cache
def stripe_client() -> stripe.StripeClient:
    settings = get_settings()
    if not settings.stripe_secret_key:
        raise payments_disabled()
    base = settings.stripe_api_base
    return stripe.StripeClient(
        settings.stripe_secret_key,
        http_client=stripe.HTTPXClient(),
        base_addresses={"api": base, "connect": base, "files": base} if base else None,  # type: ignore[arg-type]
        max_network_retries=2,
    )


def idempotency_key(kind: str, row_id: str) -> str:
    return f"{kind}-{row_id}"
