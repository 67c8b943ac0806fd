"""Payout jobs: send one line's Stripe transfer, the maintenance sweep (lost enqueues, crashed
sends) and the daily reconciliation with Stripe. Also exports the `transfer.reversed` handler."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from arq import Retry
from arq.cron import cron

from marketplace.settings import get_settings
from payouts import service

__all__ = ["CRON_JOBS", "FUNCTIONS", "STRIPE_HANDLERS"]
log = structlog.get_logger("marketplace.payouts")
STUCK_AFTER = timedelta(minutes=10)


def job_id(line_id: str) -> str:
    return f"payout-line-{line_id}"


async def send_payout(ctx: dict[str, Any], line_id: str) -> str:
    """Create the line's Stripe transfer (exactly once: row lock + state machine + idempotency key)."""
    if not get_settings().payments_enabled:
        return "payments-disabled"
    result = await service.send_line(ctx["sessionmaker"], line_id)
    if result == "error" and ctx.get("job_try", 1) < 5:
        raise Retry(defer=ctx.get("job_try", 1) * 30)  # transient Stripe error: same key, later
    return result


async def payouts_maintenance(ctx: dict[str, Any]) -> dict[str, int]:
    """Every ten minutes: re-enqueue lines left approved (a lost enqueue) or sending (a crashed job)."""
    async with ctx["sessionmaker"]() as session:
        stuck = await service.stuck_lines(session, STUCK_AFTER)
    for line_id in stuck:
        await ctx["redis"].enqueue_job("send_payout", line_id, _job_id=f"{job_id(line_id)}-sweep")
    return {"requeued": len(stuck)}


async def reconcile_payouts(ctx: dict[str, Any], batch_id: str | None = None) -> dict[str, Any]:
    """Daily: compare recent batches' transfers with Stripe's and log every difference."""
    if not get_settings().payments_enabled:
        return {"batches": 0, "differences": 0, "skipped": "payments-disabled"}
    reports = await service.reconcile(ctx["sessionmaker"], batch_id)
    differences = sum(len(r["differences"]) for r in reports)
    for report in reports:
        if report["differences"]:
            log.warning("payout_reconciliation_differences", batch_id=report["batch_id"],
                        differences=report["differences"])
    return {"batches": len(reports), "differences": differences}


FUNCTIONS = [send_payout, payouts_maintenance, reconcile_payouts]
CRON_JOBS = [
    cron(payouts_maintenance, minute=set(range(3, 60, 10)), run_at_startup=False, unique=True),
    cron(reconcile_payouts, hour={4}, minute={17}, run_at_startup=False, unique=True),
]
STRIPE_HANDLERS = [("transfer.reversed", service.on_transfer_reversed)]
