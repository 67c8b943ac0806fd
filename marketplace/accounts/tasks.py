"""Accounts housekeeping: expired and revoked tokens are deleted a month after they stop working."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq.cron import cron
from sqlalchemy import delete, or_

from marketplace.accounts.models import Token
from marketplace.core.db import utcnow


async def purge_dead_tokens(ctx: dict[str, Any]) -> int:
    cutoff = utcnow() - timedelta(days=30)
    async with ctx["sessionmaker"].begin() as session:
        result = await session.execute(
            delete(Token).where(or_(Token.expires_at < cutoff, Token.revoked_at < cutoff))
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


FUNCTIONS = [purge_dead_tokens]
CRON_JOBS = [cron(purge_dead_tokens, hour={3}, minute={17}, run_at_startup=False)]
