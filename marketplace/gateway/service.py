"""Reading the gateway's statistics (`gateway_stats`, written by `stats.py`): availability and
latency percentiles per API, for the status page and the partner dashboard.

Percentiles come from the summed latency buckets by linear interpolation inside the bucket that
holds the wanted rank, between its lower and its upper bound (as Prometheus' `histogram_quantile`
does): with `n` calls in the bucket (lo, hi] and the rank `r` calls into it, the estimate is
`lo + (hi - lo) * r / n`. So an estimate is never above the upper bound of the bucket the true value
lies in, and never below its lower bound. A percentile in the last (+inf) bucket is reported as
the last finite bound (5000 ms): "at least that".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.db import utcnow
from marketplace.gateway.stats import BUCKETS_MS, N_BUCKETS


@dataclass(frozen=True, slots=True)
class ApiStatus:
    calls: int
    errors: int  # upstream 5xx + gateway errors (502, 503, 504)
    availability: float | None  # 1 - errors / calls; None without calls
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True, slots=True)
class ApiDay:
    day: date  # UTC
    calls: int
    errors: int
    availability: float | None
    p50_ms: float | None
    p95_ms: float | None


def percentile(buckets: list[int], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) of the calls counted in `buckets` (see the module docstring)."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(BUCKETS_MS):
                return float(BUCKETS_MS[-1])
            lo = 0.0 if i == 0 else float(BUCKETS_MS[i - 1])
            hi = float(BUCKETS_MS[i])
            return lo + (hi - lo) * max(rank - seen, 0.0) / n
        seen += n
    return float(BUCKETS_MS[-1])


def _status(calls: int, errors: int, buckets: list[int]) -> tuple[float | None, float | None, float | None]:
    availability = 1 - errors / calls if calls else None
    return availability, percentile(buckets, 0.5), percentile(buckets, 0.95)


_BUCKET_SUMS = text("""
    SELECT u.i, sum(u.n)::bigint
    FROM gateway_stats s, unnest(s.latency_buckets) WITH ORDINALITY AS u(n, i)
    WHERE s.api_id = :api_id AND s.minute >= :since
    GROUP BY u.i
""")
_TOTALS = text("""
    SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(upstream_errors + gateway_errors), 0)::bigint
    FROM gateway_stats WHERE api_id = :api_id AND minute >= :since
""")


async def api_status(session: AsyncSession, api_id: str, since: datetime) -> ApiStatus:
    """Calls, availability and p50/p95 latency of an API since `since` (minute resolution: the
    minute that contains `since` counts whole)."""
    since = since.replace(second=0, microsecond=0)
    calls, errors = (await session.execute(_TOTALS, {"api_id": api_id, "since": since})).one()
    buckets = [0] * N_BUCKETS
    for i, n in (await session.execute(_BUCKET_SUMS, {"api_id": api_id, "since": since})).all():
        if 1 <= i <= N_BUCKETS:
            buckets[i - 1] = int(n)
    availability, p50, p95 = _status(int(calls), int(errors), buckets)
    return ApiStatus(calls=int(calls), errors=int(errors), availability=availability, p50_ms=p50, p95_ms=p95)


_DAILY = text("""
    WITH days AS (
        SELECT date_trunc('day', minute AT TIME ZONE 'UTC') AS day, sum(calls)::bigint AS calls,
               sum(upstream_errors + gateway_errors)::bigint AS errors
        FROM gateway_stats WHERE api_id = :api_id AND minute >= :since GROUP BY 1
    ), buckets AS (
        SELECT date_trunc('day', s.minute AT TIME ZONE 'UTC') AS day, u.i, sum(u.n)::bigint AS n
        FROM gateway_stats s, unnest(s.latency_buckets) WITH ORDINALITY AS u(n, i)
        WHERE s.api_id = :api_id AND s.minute >= :since GROUP BY 1, 2
    )
    SELECT d.day, d.calls, d.errors, array_agg(b.n ORDER BY b.i)
    FROM days d JOIN buckets b ON b.day = d.day GROUP BY d.day, d.calls, d.errors ORDER BY d.day
""")


async def api_daily(session: AsyncSession, api_id: str, days: int, now: datetime | None = None) -> list[ApiDay]:
    """One entry per UTC day with calls, over the last `days` days (today included), oldest first."""
    now = now or utcnow()
    since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=max(days, 1) - 1)
    out = []
    for day, calls, errors, buckets in (await session.execute(_DAILY, {"api_id": api_id, "since": since})).all():
        availability, p50, p95 = _status(int(calls), int(errors), [int(n) for n in buckets])
        out.append(ApiDay(day=day.date(), calls=int(calls), errors=int(errors), availability=availability,
                          p50_ms=p50, p95_ms=p95))
    return out
