"""OAuth housekeeping: rotate the signing key when due, drop keys whose tokens have all expired,
and delete codes and tokens that stopped working a while ago."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq.cron import cron
from sqlalchemy import delete, or_

from marketplace.core.db import utcnow
from oauth import keys
from oauth.models import OAuthAccessToken, OAuthCode, OAuthRefreshToken

KEEP_DEAD = timedelta(days=7)


async def rotate_signing_key_if_due(ctx: dict[str, Any]) -> str | None:
    async with ctx["sessionmaker"].begin() as session:
        key = await keys.rotate_if_due(session)
        await keys.purge_expired_keys(session)
    return key.kid if key else None


async def purge_dead_oauth_rows(ctx: dict[str, Any]) -> int:
    cutoff = utcnow() - KEEP_DEAD
    total = 0
    async with ctx["sessionmaker"].begin() as session:
        for stmt in (
            delete(OAuthCode).where(OAuthCode.expires_at < cutoff),
            delete(OAuthAccessToken).where(OAuthAccessToken.expires_at < cutoff),
            delete(OAuthRefreshToken).where(or_(OAuthRefreshToken.expires_at < cutoff,
                                                OAuthRefreshToken.revoked_at < cutoff)),
        ):
            total += int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]
    return total


FUNCTIONS = [rotate_signing_key_if_due, purge_dead_oauth_rows]
CRON_JOBS = [
    cron(rotate_signing_key_if_due, minute={7}, run_at_startup=False),  # hourly check; rotates every N days
    cron(purge_dead_oauth_rows, hour={3}, minute={41}, run_at_startup=False),
]
