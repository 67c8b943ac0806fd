"""The `marketplace` command: serve, worker, migrate, create-operator."""

from __future__ import annotations

import asyncio
import os
import sys

import click

from marketplace.settings import get_settings


def _migrate() -> None:
    from alembic import command
    from alembic.config import Config

    from marketplace.migrations_config import alembic_config

    cfg: Config = alembic_config()
    command.upgrade(cfg, "head")


@click.group()
def main() -> None:
    """API marketplace platform."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="HTTP worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Run the API, the gateway and (when Redis is embedded) a job worker."""
    from marketplace.core.embedded import ensure_services

    pg_embedded, redis_embedded = ensure_services()
    if get_settings().run_worker_in_process is None and redis_embedded:
        os.environ["MARKETPLACE_INPROCESS_WORKER"] = "1"
    if pg_embedded:
        click.echo("Using embedded PostgreSQL under " + str(get_settings().data_dir.resolve()), err=True)
        _migrate()
    if redis_embedded:
        click.echo("Using embedded Redis (with an in-process job worker)", err=True)
    os.environ.setdefault("MARKETPLACE_BASE_URL", f"http://{host}:{port}")
    get_settings.cache_clear()
    click.echo(f"Listening on http://{host}:{port}  (API docs: http://{host}:{port}/schema)", err=True)

    from granian.constants import Interfaces, Loops
    from granian.server import Server

    Server(
        "marketplace.app:create_app", address=host, port=port, interface=Interfaces.ASGI, factory=True,
        workers=workers, loop=Loops.uvloop, log_access=False,
    ).serve()


@main.command()
def worker() -> None:
    """Run an arq job worker (needs REDIS_URL and DATABASE_URL)."""
    settings = get_settings()
    if not settings.redis_url or not settings.database_url:
        sys.exit("marketplace worker needs REDIS_URL and DATABASE_URL; with embedded services, "
                 "`marketplace serve` runs a worker in-process.")
    from marketplace.worker import run_worker

    run_worker()


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from marketplace.core.embedded import ensure_services

    ensure_services()
    _migrate()
    click.echo("Database is up to date.")


@main.command("create-operator")
@click.option("--email", required=True)
@click.option("--password", required=True)
def create_operator(email: str, password: str) -> None:
    """Create (or promote) a platform operator."""
    from marketplace.core.embedded import ensure_services

    pg_embedded, _ = ensure_services()
    if pg_embedded:
        _migrate()
    if len(password) < 8:
        sys.exit("The password must have at least 8 characters.")

    async def run() -> tuple[str, bool]:
        from marketplace import registry
        from marketplace.accounts.service import create_operator as create
        from marketplace.core.db import make_engine, make_sessionmaker

        registry.import_models()
        engine = make_engine(get_settings().database_url or "")
        try:
            async with make_sessionmaker(engine).begin() as session:
                user, created = await create(session, email=email, password=password)
                return user.id, created
        finally:
            await engine.dispose()

    user_id, created = asyncio.run(run())
    click.echo(f"{'Created' if created else 'Promoted'} operator {email} ({user_id}).")


@main.command("reconcile-payouts")
@click.option("--batch", "batch_id", default=None, help="One payout batch id (default: batches approved in 35 days)")
def reconcile_payouts(batch_id: str | None) -> None:
    """Compare payout transfers with Stripe's; print the differences (exit 1 if any)."""
    from payouts.cli import reconcile_command

    sys.exit(reconcile_command(batch_id))


if __name__ == "__main__":
    main()
