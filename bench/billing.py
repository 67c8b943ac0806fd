"""Benchmark: close a billing period for 10,000 subscriptions whose usage is 10 million events.

The usage is generated directly as metering's hourly rollups (`usage_rollups`) with
`generate_series` (10,000 subscriptions x 5 endpoints x 20 hours x 100 calls = 10,000,000 events in
1,000,000 rollup rows) and read through the real `metering.service.usage_for_period`, one query per
subscription (`BENCH_BATCH_SOURCE=1`: one query per batch of 500 instead, the shape a future
`metering.service.usage_for_periods` could take). The close runs the real code
(`billing.service.close_all`: rating, invoices and lines, ledger postings, outbox events, period
roll) in batches of 500 subscriptions, one transaction each, so memory stays flat in the number of
subscriptions and events. Prints the time, the rate, and the process's peak RSS growth.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        python bench/billing.py [--subscriptions 10000] [--events 10000000]

It creates a throwaway database next to DATABASE_URL's, migrates it, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ENDPOINTS = 5
BUCKETS = 20


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL")
    if not base:
        raise SystemExit("Set DATABASE_URL (postgresql+asyncpg://…) to a server where a database may be created.")
    name = f"mkt_bench_{secrets.token_hex(4)}"
    parts = urlsplit(base.replace("postgresql+asyncpg://", "postgresql://"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    url = urlunsplit(parts._replace(path=f"/{name}", scheme="postgresql+asyncpg"))
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("MARKETPLACE_LOG_LEVEL", "WARNING")
    try:
        await run(url, args.subscriptions, args.events, args.batch)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def run(url: str, subscriptions: int, events: int, batch: int) -> None:
    from alembic import command

    from marketplace import registry
    from marketplace.migrations_config import alembic_config
    from marketplace.settings import get_settings

    get_settings.cache_clear()
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    registry.import_models()

    calls_per_row = max(1, events // (subscriptions * ENDPOINTS * BUCKETS))
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    await conn.execute("""
        INSERT INTO users (id, email, name, password_hash, is_operator, created_at, updated_at)
        SELECT 'usr_b' || g, 'b' || g || '@bench.test', 'Bench', 'x', false, now(), now()
        FROM generate_series(1, $1) g""", subscriptions)
    await conn.execute("""INSERT INTO partners (id, name, status, connect_status, charges_enabled, payouts_enabled,
                          connect_requirements, created_at, updated_at)
                          VALUES ('prt_bench', 'Bench', 'active', 'enabled', true, true, '[]', now(), now())""")
    await conn.execute("""
        INSERT INTO apis (id, partner_id, slug, name, description, upstream_url, tags, status,
                          proxy_secret_encrypted, revision, created_at, updated_at)
        SELECT 'api_b' || g, 'prt_bench', 'bench-' || g, 'Bench ' || g, '', 'https://upstream.test', '{}',
               'published', 'x', 1, now(), now() FROM generate_series(1, 10) g""")
    await conn.execute("""INSERT INTO plans (id, api_id, status, current_version, created_at, updated_at)
                          SELECT 'pln_b' || g, 'api_b' || g, 'active', 1, now(), now() FROM generate_series(1, 10) g""")
    await conn.execute("""
        INSERT INTO plan_versions (id, plan_id, version, name, currency, monthly_fee, included_units, unit_pricing,
                                   quota_hard, scopes, created_at, updated_at)
        SELECT 'plv_b' || g, 'pln_b' || g, 1, 'Pro', 'usd', 4900, 1000,
               '{"model": "graduated", "tiers": [{"up_to": 1000, "unit_amount": "0.1"},
                                                 {"up_to": null, "unit_amount": "0.05"}]}'::jsonb,
               false, '{}', now(), now() FROM generate_series(1, 10) g""")
    await conn.execute("""
        INSERT INTO subscriptions (id, consumer_id, api_id, partner_id, plan_id, plan_version_id, status,
                                   current_period_start, current_period_end, cancel_at_period_end, revision,
                                   created_at, updated_at)
        SELECT 'sub_b' || g, 'usr_b' || g, 'api_b' || (g % 10 + 1), 'prt_bench', 'pln_b' || (g % 10 + 1),
               'plv_b' || (g % 10 + 1), 'active', $2, $3, false, 1, now(), now()
        FROM generate_series(1, $1) g""", subscriptions, start, end)
    await conn.execute("""
        INSERT INTO usage_rollups (subscription_id, endpoint_id, hour, consumer_id, partner_id, api_id, method, path,
                                   calls, units)
        SELECT 'sub_b' || s, 'ep_' || e, $2::timestamptz + (h || ' hours')::interval, 'usr_b' || s, 'prt_bench',
               'api_b' || (s % 10 + 1), 'GET', '/endpoint/' || e, $1::bigint, $1::bigint * e
        FROM generate_series(1, $3) s, generate_series(1, $4) e, generate_series(1, $5) h""",
        calls_per_row, start, subscriptions, ENDPOINTS, BUCKETS)
    await conn.execute("ANALYZE")
    total_events = int(await conn.fetchval("SELECT sum(calls) FROM usage_rollups"))
    setup = time.perf_counter() - t0
    await conn.close()

    from sqlalchemy import text

    from marketplace.billing import service
    from marketplace.billing import usage as usage_source
    from marketplace.billing.rating import EndpointUsage
    from marketplace.core.db import make_engine, make_sessionmaker

    async def rollups_batch(session, requests):  # type: ignore[no-untyped-def]
        # One query for a whole batch of subscriptions (each with its own whole-hour period).
        rows = await session.execute(text(
            "SELECT r.subscription_id, endpoint_id, min(method), min(path), sum(calls), sum(units) "
            "FROM unnest(CAST(:s AS text[]), CAST(:a AS timestamptz[]), CAST(:b AS timestamptz[])) AS q(sid, a, b) "
            "JOIN usage_rollups r ON r.subscription_id = q.sid AND r.hour >= q.a AND r.hour < q.b "
            "GROUP BY 1, 2 ORDER BY 1, 2"),
            {"s": [r[0] for r in requests], "a": [r[1] for r in requests], "b": [r[2] for r in requests]})
        found: dict[str, list[EndpointUsage]] = {}
        for s, e, m, p, c, u in rows:
            found.setdefault(s, []).append(EndpointUsage(endpoint_id=e, method=m, path=p, calls=int(c), units=int(u)))
        return found

    usage_source.set_source(None)  # the real metering.service.usage_for_period
    if os.environ.get("BENCH_BATCH_SOURCE") == "1":
        usage_source.set_batch_source(rollups_batch)
    engine = make_engine(url, pool_size=2, echo=bool(os.environ.get("BENCH_ECHO")))
    sessionmaker = make_sessionmaker(engine)
    rss_before = rss_mb()
    t1 = time.perf_counter()
    closed, _open_invoices = await service.close_all(sessionmaker, end, batch=batch)
    elapsed = time.perf_counter() - t1
    rss_after = rss_mb()
    async with engine.connect() as c:
        invoices = (await c.execute(text("SELECT count(*), sum(total) FROM invoices"))).one()
        lines = (await c.execute(text("SELECT count(*) FROM invoice_lines"))).scalar()
        ledger_sum = (await c.execute(text("SELECT coalesce(sum(amount), 0) FROM ledger_entries"))).scalar()
    await engine.dispose()
    source = "one batch query per 500" if os.environ.get("BENCH_BATCH_SOURCE") == "1" else \
        "metering.service.usage_for_period per subscription"
    print(f"usage source: {source}")
    print(f"setup (generate_series): {setup:.1f} s; {subscriptions:,} subscriptions, {total_events:,} usage events "
          f"in {subscriptions * ENDPOINTS * BUCKETS:,} rollup rows")
    print(f"close: {elapsed:.1f} s for {closed:,} subscriptions ({closed / elapsed:,.0f}/s; "
          f"{total_events / elapsed:,.0f} events/s) → {invoices[0]:,} invoices, {lines:,} lines, "
          f"total {invoices[1]:,} minor units; ledger sum {ledger_sum} (must be 0)")
    print(f"peak RSS: {rss_before:.0f} MB before the close, {rss_after:.0f} MB after (+{rss_after - rss_before:.0f} MB)")
    print(f"target: < 60 s → {'OK' if elapsed < 60 else 'MISSED'} (ratio {elapsed / 60:.2f} of the budget)")


if __name__ == "__main__":
    asyncio.run(main())
