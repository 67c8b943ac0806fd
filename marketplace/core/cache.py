"""Cache invalidation across processes, over Redis pub/sub.

Services call `invalidate_after_commit(session, topic, ident)` when they change something that
some process caches (an API by slug, an API key by hash, a subscription); the message goes out on
`CHANNEL` only once the transaction commits, so no process re-reads the old row and caches it
again. Process-local caches (the gateway's) subscribe to `CHANNEL` and drop the entry.
Messages are `"{topic}:{ident}"`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from marketplace.core.redis import key

_publisher: Redis | None = None
_pending_tasks: set[asyncio.Task[Any]] = set()


def channel() -> str:
    return key("invalidate")


def set_publisher(redis: Redis | None) -> None:
    """Called at app and worker start-up with the process's Redis client."""
    global _publisher
    _publisher = redis


def invalidate_after_commit(session: AsyncSession | Session, topic: str, ident: str) -> None:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info.setdefault("invalidations", set()).add(f"{topic}:{ident}")


async def publish_now(redis: Redis, topic: str, ident: str) -> None:
    await redis.publish(channel(), f"{topic}:{ident}")


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    messages = session.info.pop("invalidations", None)
    if not messages or _publisher is None:
        return
    loop = asyncio.get_running_loop()
    for message in messages:
        task = loop.create_task(_publisher.publish(channel(), message))
        _pending_tasks.add(task)
        task.add_done_callback(_pending_tasks.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("invalidations", None)
