"""Times from clients: read as UTC, within the range PostgreSQL and Python can both hold."""

from __future__ import annotations

from datetime import UTC, datetime

from marketplace.core.errors import Unprocessable

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def as_utc(value: datetime, field: str) -> datetime:
    """`value` in UTC (a time without a zone is taken as UTC); 422 when it is out of range."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise Unprocessable(f"{field} is out of range; send an ISO 8601 time between {EARLIEST.year} and {LATEST.year}, "
                            "e.g. 2026-11-01T00:00:00Z.", errors=[{"field": field, "message": "out of range"}])
    return utc
