"""`marketplace reconcile-payouts [--batch ID]`: the reconciliation report on the terminal."""

from __future__ import annotations

import asyncio
import json

import click

from marketplace.settings import get_settings


def reconcile_command(batch_id: str | None) -> int:
    """Print one JSON report per batch; 0 when Stripe agrees with us, 1 on differences, 2 on errors."""
    from marketplace.core.embedded import ensure_services
    from marketplace.core.errors import Problem

    ensure_services()
    settings = get_settings()
    if not settings.payments_enabled:
        click.echo("Payments are not configured: set STRIPE_SECRET_KEY to reconcile payouts with Stripe.", err=True)
        return 2

    async def run() -> list[dict[str, object]]:
        from marketplace import registry
        from marketplace.core.db import make_engine, make_sessionmaker
        from payouts import service

        registry.import_models()
        engine = make_engine(get_settings().database_url or "")
        try:
            return await service.reconcile(make_sessionmaker(engine), batch_id)
        finally:
            await engine.dispose()

    try:
        reports = asyncio.run(run())
    except Problem as exc:
        click.echo(exc.detail, err=True)
        return 2
    for report in reports:
        click.echo(json.dumps(report, default=str))
    differences = sum(len(r["differences"]) for r in reports)  # type: ignore[arg-type]
    click.echo(f"{len(reports)} batch(es) checked, {differences} difference(s).", err=True)
    return 1 if differences else 0
