"""The outbox relay: events → one delivery per matching endpoint → one arq job per delivery.

How an event gets to arq fast, and never gets lost:

1. **After-commit nudge.** A session that wrote an `Event` (or a delivery waiting for a job) gets
   a flag; when that transaction commits, this module enqueues the relay job. Its job id is the
   current 50 ms time bucket and it is deferred to the end of that bucket, so a burst of commits
   makes one relay run, and every commit that happened before the run is seen by it (the job
   cannot start before its bucket ends). A rolled-back transaction nudges nothing, and its event
   never existed.
2. **The relay job** (`relay`) claims unrelayed events with `FOR UPDATE SKIP LOCKED` (so several
   workers can relay at once), writes one delivery per matching enabled endpoint, marks the events
   relayed, and gives every waiting delivery its job id — all in one transaction. After the commit
   it enqueues one `deliver` job per delivery with `_job_id` = the delivery id, so running the
   relay twice enqueues once.
3. **The sweep** (cron, every minute) is the backstop: it relays anything a lost nudge left behind,
   and re-enqueues pending deliveries whose job vanished (worker killed mid-delivery after its
   lease expired, Redis lost the job, a crash between commit and enqueue).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import structlog
from arq import create_pool
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from marketplace.core.db import utcnow
from marketplace.core.events import Event
from marketplace.core.ids import new_id
from marketplace.core.redis import arq_settings, key, queue_name
from marketplace.settings import get_settings
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = structlog.get_logger("marketplace.webhooks")

RELAY_BATCH = 1000
BUCKET_MS = 50
ENQUEUE_CHUNK = 500
NUDGE_FLAG = "webhooks_relay"

# Job names (the functions live in webhooks.tasks; names keep this module free of that import).
RELAY_JOB = "relay_webhook_events"
DELIVER_JOB = "deliver_webhook"

_pools: dict[asyncio.AbstractEventLoop, ArqRedis] = {}
_pending: set[asyncio.Task[Any]] = set()


# --- the after-commit nudge ---------------------------------------------------------------------

def set_enqueuer(pool: ArqRedis | None) -> None:
    """The arq pool this event loop enqueues with (the app's or the worker's); made lazily otherwise."""
    loop = asyncio.get_running_loop()
    if pool is None:
        _pools.pop(loop, None)
    else:
        _pools[loop] = pool


async def enqueuer() -> ArqRedis:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        for stale in [lp for lp in _pools if lp.is_closed()]:
            del _pools[stale]
        pool = _pools[loop] = await create_pool(arq_settings(), default_queue_name=queue_name())
    return pool


def request_relay(session: AsyncSession | Session) -> None:
    """Ask for a relay run once this session's transaction commits."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info[NUDGE_FLAG] = True


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    if any(isinstance(obj, Event) for obj in session.new):
        session.info[NUDGE_FLAG] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if not session.info.pop(NUDGE_FLAG, False):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a synchronous script: the sweep relays within a minute
        return
    task = loop.create_task(nudge())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(NUDGE_FLAG, None)


async def nudge() -> None:
    """Enqueue the relay for the current time bucket (at most one run per bucket)."""
    try:
        pool = await enqueuer()
        bucket = int(time.time() * 1000) // BUCKET_MS
        run_at_ms = (bucket + 1) * BUCKET_MS
        await pool.enqueue_job(RELAY_JOB, _job_id=key("webhooks", "relay", str(bucket)),
                               _defer_by=max(0.0, run_at_ms / 1000 - time.time()))
    except Exception:  # the sweep is the backstop; never fail the caller's commit
        log.warning("webhook_relay_nudge_failed", exc_info=True)


# --- the relay ----------------------------------------------------------------------------------

def job_id_for(delivery_id: str, attempt: int) -> str:
    """The arq job id of a delivery's attempt `attempt` (1-based)."""
    return delivery_id if attempt <= 1 else f"{delivery_id}:{attempt}"


def _matches(endpoint: Any, event_row: Any) -> bool:
    owner = (endpoint.partner_id is not None and endpoint.partner_id == event_row.partner_id) or \
            (endpoint.consumer_id is not None and endpoint.consumer_id == event_row.consumer_id)
    return owner and (endpoint.event_types == ["*"] or event_row.type in endpoint.event_types)


async def relay_batch(session: AsyncSession, limit: int = RELAY_BATCH) -> tuple[list[tuple[str, str]], int]:
    """One claim: fan out unrelayed events, give waiting deliveries a job id. Returns the
    (delivery id, job id) pairs to enqueue after the commit and the number of events claimed."""
    now = utcnow()
    events = (await session.execute(
        select(Event.id, Event.type, Event.partner_id, Event.consumer_id)
        .where(Event.relayed_at.is_(None)).order_by(Event.created_at).limit(limit)
        .with_for_update(skip_locked=True)
    )).all()
    if events:
        partner_ids = {e.partner_id for e in events if e.partner_id}
        consumer_ids = {e.consumer_id for e in events if e.consumer_id}
        endpoints = (await session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.partner_id, WebhookEndpoint.consumer_id,
                   WebhookEndpoint.event_types)
            .where(WebhookEndpoint.enabled.is_(True),
                   WebhookEndpoint.partner_id.in_(partner_ids) | WebhookEndpoint.consumer_id.in_(consumer_ids))
        )).all() if partner_ids or consumer_ids else []
        rows = []
        for ev in events:
            for ep in endpoints:
                if _matches(ep, ev):
                    delivery_id = new_id("delivery")
                    rows.append({"id": delivery_id, "event_id": ev.id, "endpoint_id": ep.id, "event_type": ev.type,
                                 "trigger": "event", "status": "pending", "attempts": 0, "next_attempt_at": now,
                                 "job_id": None, "created_at": now})
        if rows:
            await session.execute(WebhookDelivery.__table__.insert(), rows)
        await session.execute(update(Event).where(Event.id.in_([e.id for e in events])).values(relayed_at=now)
                              .execution_options(synchronize_session=False))
    waiting = (await session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.job_id.is_(None))
        .order_by(WebhookDelivery.created_at).limit(limit * 20).with_for_update(skip_locked=True)
    )).all()
    jobs = [(row.id, job_id_for(row.id, row.attempts + 1)) for row in waiting]
    if jobs:
        # One UPDATE: job id = delivery id for a first attempt (the common case).
        first = [d for d, j in jobs if d == j]
        if first:
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(first))
                                  .values(job_id=WebhookDelivery.id).execution_options(synchronize_session=False))
        for delivery_id, job_id in jobs:
            if delivery_id != job_id:
                await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                      .values(job_id=job_id).execution_options(synchronize_session=False))
    return jobs, len(events)


async def enqueue_deliveries(pool: ArqRedis, jobs: list[tuple[str, str]], defer_by: float = 0.0) -> int:
    """Enqueue `deliver` jobs, skipping job ids arq already knows (queued, running or finished).

    Same keys and format as `ArqRedis.enqueue_job`, but pipelined: two round trips per 500 jobs
    instead of three per job. Without enqueue_job's WATCH, two relays racing on one id could both
    write it; the queue is a sorted set, so it still holds the job once, and the delivery's lease
    stops a second run from sending twice.
    """
    enqueued = 0
    for start in range(0, len(jobs), ENQUEUE_CHUNK):
        chunk = jobs[start:start + ENQUEUE_CHUNK]
        async with pool.pipeline(transaction=False) as pipe:
            for _, job_id in chunk:
                pipe.exists(job_key_prefix + job_id, result_key_prefix + job_id)
            known = await pipe.execute()
        now_ms = int(time.time() * 1000)
        score = now_ms + int(defer_by * 1000)
        expires_ms = score - now_ms + pool.expires_extra_ms
        async with pool.pipeline(transaction=False) as pipe:
            for (delivery_id, job_id), exists in zip(chunk, known, strict=True):
                if exists:
                    continue
                job = serialize_job(DELIVER_JOB, (delivery_id,), {}, None, now_ms, serializer=pool.job_serializer)
                pipe.psetex(job_key_prefix + job_id, expires_ms, job)
                pipe.zadd(queue_name(), {job_id: score})
                enqueued += 1
            await pipe.execute()
    return enqueued


async def relay(sessionmaker: async_sessionmaker[AsyncSession], pool: ArqRedis) -> int:
    """Relay until nothing is left; returns how many delivery jobs were enqueued."""
    schedule = get_settings().retry_schedule
    first_delay = float(schedule[0]) if schedule else 0.0
    total = 0
    while True:
        async with sessionmaker.begin() as session:
            jobs, claimed = await relay_batch(session)
        if jobs:
            total += await enqueue_deliveries(pool, jobs, first_delay)
        if claimed < RELAY_BATCH and len(jobs) < RELAY_BATCH * 20:
            return total


# --- the sweep and retention --------------------------------------------------------------------

async def sweep(sessionmaker: async_sessionmaker[AsyncSession], pool: ArqRedis, *,
                grace: timedelta = timedelta(seconds=30), limit: int = 1000) -> int:
    """Re-enqueue pending deliveries that are overdue, not leased, and whose arq job is gone."""
    await relay(sessionmaker, pool)
    cutoff = utcnow() - grace
    async with sessionmaker.begin() as session:
        rows = (await session.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.job_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.job_id.is_not(None),
                   WebhookDelivery.next_attempt_at < cutoff,
                   (WebhookDelivery.lease_until.is_(None)) | (WebhookDelivery.lease_until < utcnow()))
            .order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
        )).all()
        lost = []
        for row in rows:
            alive = await pool.exists(job_key_prefix + row.job_id, in_progress_key_prefix + row.job_id)
            if not alive:
                job_id = f"{job_id_for(row.id, row.attempts + 1)}:s{int(time.time())}"
                lost.append((row.id, job_id))
                await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id)
                                      .values(job_id=job_id).execution_options(synchronize_session=False))
    if lost:
        log.warning("webhook_deliveries_requeued", count=len(lost))
        await enqueue_deliveries(pool, lost)
    return len(lost)


async def purge(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Drop events (with their deliveries and attempts) and attempts older than the retention."""
    cutoff = utcnow() - timedelta(days=get_settings().webhook_retention_days)
    async with sessionmaker.begin() as session:
        attempts = await session.execute(delete(WebhookAttempt).where(WebhookAttempt.at < cutoff))
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < cutoff,
                                                            WebhookDelivery.status != "pending"))
        still_pending = select(WebhookDelivery.id).where(WebhookDelivery.event_id == Event.id).exists()
        events = await session.execute(delete(Event).where(Event.created_at < cutoff, Event.relayed_at.is_not(None),
                                                           ~still_pending))
    return int(events.rowcount or 0) + int(attempts.rowcount or 0)  # type: ignore[attr-defined]
