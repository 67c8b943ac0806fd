"""Cursor pagination, newest first. Ids are ULID-based, so the id order is the creation order."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.errors import Unprocessable

T = TypeVar("T")
CURSOR = re.compile(r"[a-z]{1,8}_[0-9a-z]{1,40}")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None = None


def checked_cursor(starting_after: str | None) -> str | None:
    """A cursor must look like one of our ids; anything else (NUL bytes included) is a 422."""
    if starting_after is not None and not CURSOR.fullmatch(starting_after):
        raise Unprocessable("starting_after must be the id of the last item of the previous page (next_cursor).",
                            errors=[{"field": "starting_after", "message": "not an id"}])
    return starting_after


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
    starting_after = checked_cursor(starting_after)
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
