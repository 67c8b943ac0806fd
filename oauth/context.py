"""The per-call context of authlib's synchronous hooks: the request's session (its sync facade,
inside `AsyncSession.run_sync`) and the side effects to apply afterwards. See `oauth.server` for
why authlib runs this way."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from ulid import ULID

from oauth import service

T = TypeVar("T")


def internal_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


# --- per-call context (the sync session and collected side effects) -----------------------------

@dataclass
class OAuthContext:
    session: Session | None = None
    deny: list[tuple[str, int]] = field(default_factory=list)  # (jti, ttl) for the Redis deny-list
    grant_id: str | None = None  # the remembered grant a new code belongs to
    issued: dict[str, Any] = field(default_factory=dict)  # what the token generator made, for save_token


_current: ContextVar[OAuthContext] = ContextVar("oauth_context")


def ctx() -> OAuthContext:
    return _current.get()


def db() -> Session:
    session = ctx().session
    assert session is not None
    return session


async def run(db_session: AsyncSession, redis: Redis, fn: Callable[[OAuthContext], T],
              context: OAuthContext | None = None) -> T:
    """Run authlib (sync) against the request's session via the greenlet bridge, then apply the
    Redis side effects it collected."""
    context = context or OAuthContext()

    def call(sync_session: Session) -> T:
        context.session = sync_session
        token = _current.set(context)
        try:
            return fn(context)
        finally:
            _current.reset(token)

    try:
        return await db_session.run_sync(call)
    finally:
        await service.push_deny_list(redis, context.deny)


