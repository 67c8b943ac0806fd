"""What the gateway records for the status page and dashboards: per-API call statistics per
minute, written by each gateway process's flusher (see `stats.py`), never on the hot path."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.core.db import Base


class GatewayStat(Base):
    """One API's calls in one minute, summed over every gateway process (upserts add counts).

    `latency_buckets[i]` counts calls that took at most `stats.BUCKETS_MS[i]` ms (and more than
    the bucket before); the last element counts the calls slower than the last bound (+inf)."""

    __tablename__ = "gateway_stats"

    api_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    upstream_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    gateway_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_buckets: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
