"""Webhook delivery benchmark: deliveries per second per worker, and commit → first attempt latency.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        python bench/webhooks.py [--events 5000] [--endpoints 10] [--samples 200]

Creates its own database (like tests/conftest.py) and Redis namespace, starts a loopback receiver
(aiohttp) in this process and ONE worker process (`marketplace worker`'s code), then:

1. latency, idle: publishes events one at a time (each its own transaction, 50 ms apart) and
   measures the time from each commit to its first attempt arriving at the receiver: p50/p99;
2. throughput: commits `--events` events at once (fanned out to one endpoint each) and measures
   deliveries per second from that commit until the receiver has them all.

Both figures come from the same run; the database is dropped at the end. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def database_urls(base: str, name: str) -> tuple[str, str]:
    parts = urlsplit(base.replace("postgresql+asyncpg://", "postgresql://"))
    return (urlunsplit(parts._replace(path="/postgres")),
            urlunsplit(parts._replace(path=f"/{name}", scheme="postgresql+asyncpg")))


class Receiver:
    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.count = 0
        self.done = asyncio.Event()
        self.expect = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        self.count += 1
        self.first_seen.setdefault(request.headers["webhook-id"], now)
        if self.expect and len(self.first_seen) >= self.expect:
            self.done.set()
        return web.Response(text="ok")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def main(args: argparse.Namespace) -> None:
    base = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not base or not redis_url:
        sys.exit("Set DATABASE_URL (any database on the server; a bench database is created) and REDIS_URL.")
    run = secrets.token_hex(4)
    name = f"mkt_bench_{run}"
    admin, url = database_urls(base, name)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"mkt-bench-{run}",
           "MARKETPLACE_ALLOW_PRIVATE_NETWORKS": "1", "MARKETPLACE_LOG_LEVEL": "WARNING",
           "MARKETPLACE_LOG_JSON": "1", "MARKETPLACE_INPROCESS_WORKER": "0"}
    os.environ.update(env)
    worker: subprocess.Popen[bytes] | None = None
    runner: web.AppRunner | None = None
    try:
        from alembic import command

        from marketplace.migrations_config import alembic_config

        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")

        from marketplace import registry
        from marketplace.accounts.models import User
        from marketplace.core.db import make_engine, make_sessionmaker
        from marketplace.core.events import publish
        from marketplace.core.ids import new_id
        from marketplace.core.security import encrypt
        from webhooks.models import WebhookEndpoint
        from webhooks.service import new_secret

        registry.import_models()
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/hook/{n}", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        engine = make_engine(url, pool_size=5)
        sessionmaker = make_sessionmaker(engine)
        consumers = []
        async with sessionmaker.begin() as session:
            for i in range(args.endpoints):
                user = User(id=new_id("user"), email=f"bench-{run}-{i}@example.com", name="bench",
                            password_hash="x", is_operator=False)
                session.add(user)
                await session.flush()
                session.add(WebhookEndpoint(id=new_id("webhook_endpoint"), consumer_id=user.id,
                                            url=f"http://127.0.0.1:{port}/hook/{i}", description="bench",
                                            event_types=["*"], enabled=True, secret_encrypted=encrypt(new_secret())))
                consumers.append(user.id)

        worker_log = open(Path(tempfile.gettempdir()) / f"webhooks-bench-worker-{run}.log", "wb")
        worker = subprocess.Popen([sys.executable, "-c", "from marketplace.worker import run_worker; run_worker()"],
                                  cwd=ROOT, env={**os.environ}, stdout=worker_log, stderr=subprocess.STDOUT)
        print(f"worker pid {worker.pid}, log {worker_log.name}", file=sys.stderr, flush=True)
        # Warm up: the worker is ready once a first event comes through.
        receiver.expect = 1
        async with sessionmaker.begin() as session:
            publish(session, "webhook.test", {"warmup": True}, consumer_id=consumers[0])
        await asyncio.wait_for(receiver.done.wait(), 60)

        # 1. Latency when idle: one event at a time.
        committed: dict[str, float] = {}
        for i in range(args.samples):
            async with sessionmaker.begin() as session:
                event = publish(session, "invoice.paid", {"n": i}, consumer_id=consumers[i % len(consumers)])
            committed[event.id] = time.time()
            await asyncio.sleep(args.gap)
        deadline = time.time() + 30
        while any(e not in receiver.first_seen for e in committed) and time.time() < deadline:
            await asyncio.sleep(0.05)
        latencies = [(receiver.first_seen[e] - t) * 1000 for e, t in committed.items() if e in receiver.first_seen]

        # 2. Throughput: a burst of events committed at once.
        before = len(receiver.first_seen)
        receiver.done.clear()
        receiver.expect = before + args.events
        async with sessionmaker.begin() as session:
            for i in range(args.events):
                publish(session, "usage.threshold_reached", {"n": i}, consumer_id=consumers[i % len(consumers)])
        started = time.time()
        try:
            await asyncio.wait_for(receiver.done.wait(), 600)
        except TimeoutError:
            pass
        elapsed = time.time() - started
        delivered = len(receiver.first_seen) - before
        await engine.dispose()

        print(f"webhooks bench: 1 worker process, {args.endpoints} endpoints, loopback aiohttp receiver, "
              f"{os.cpu_count()} CPUs shared by worker, receiver, PostgreSQL and Redis")
        print(f"  commit -> first attempt, idle ({len(latencies)}/{args.samples} events, {args.gap * 1000:.0f} ms apart): "
              f"p50 {statistics.median(latencies):.0f} ms, p99 {pct(latencies, 99):.0f} ms, "
              f"max {max(latencies):.0f} ms")
        print(f"  throughput: {delivered}/{args.events} deliveries in {elapsed:.2f} s from one commit = "
              f"{delivered / elapsed:.0f} deliveries/s per worker")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
        if runner is not None:
            await runner.cleanup()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        async for key in client.scan_iter(match=f"mkt-bench-{run}:*", count=1000):
            await client.delete(key)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="events in the throughput burst")
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200, help="events for the latency measurement")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between latency samples")
    asyncio.run(main(parser.parse_args()))
