from __future__ import annotations

import msgspec


class OnboardingOut(msgspec.Struct):
    url: str
    account_id: str
    expires_at: int


class ConnectStatusOut(msgspec.Struct):
    partner_id: str
    account_id: str | None
    connect_status: str
    charges_enabled: bool
    payouts_enabled: bool
    requirements: list[str]
