"""Monthly billing periods anchored on the subscription date (pure calendar math, no I/O).

A subscription started on Jan 31 renews on Feb 28 (29), Mar 31, Apr 30, …: each period end is
`anchor + n months`, with the day clamped to the month's last day, computed from the anchor
every time (so a short month never shifts later periods).
"""

from __future__ import annotations

import calendar
from datetime import datetime


def add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_containing(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly period [start, end) anchored on `anchor` that contains `now` (>= anchor)."""
    if now < anchor:
        return anchor, add_months(anchor, 1)
    n = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    n = max(n - 1, 0)
    while add_months(anchor, n + 1) <= now:
        n += 1
    return add_months(anchor, n), add_months(anchor, n + 1)
