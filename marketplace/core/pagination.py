"""Cursor pagination, newest first. Ids are ULID-based, so the id order is the creation order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None = None


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, limit))


async def paginate(
    session: AsyncSession,
    stmt: Select[Any],
    id_column: Any,
    *,
    limit: int | None,
    starting_after: str | None,
    to_schema: Callable[[Any], T],
) -> Page[T]:
    """Run `stmt` newest first from the cursor; `starting_after` is the last id of the page before."""
    size = clamp_limit(limit)
    if starting_after:
        stmt = stmt.where(id_column < starting_after)
    rows: Sequence[Any] = (await session.scalars(stmt.order_by(id_column.desc()).limit(size + 1))).all()
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(
        data=[to_schema(row) for row in rows],
        has_more=has_more,
        next_cursor=rows[-1].id if has_more and rows else None,
    )
