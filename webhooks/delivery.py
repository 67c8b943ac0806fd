"""One delivery attempt: claim the delivery, sign, POST, record the attempt, schedule the next.

- Standard Webhooks: `webhook-id` is the event id (the same on every retry, resend and replay,
  so receivers can de-duplicate), `webhook-timestamp` the attempt time, `webhook-signature` one
  `v1,<sig>` per active secret (two during the 24 h after a rotation), signed by the
  `standardwebhooks` library. The body is `{type, timestamp, data}` and identical on every attempt.
- Only 2xx is a success. 410 disables the endpoint. 429/503 with `Retry-After` wait that long.
  Otherwise the next attempt follows WEBHOOK_RETRY_SCHEDULE (±10 % jitter); after the last one the
  delivery is `failed`. An endpoint with no success for WEBHOOK_DISABLE_AFTER_DAYS is disabled, and
  its owner gets `endpoint.disabled` on their other endpoints.
- The database is not held during the HTTP call: a short transaction takes a 60 s lease on the
  delivery (so a duplicate job cannot send it at the same time), a second one records the result.
  A worker killed in between leaves the lease to expire; the sweep then re-enqueues.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import asyncpg
import httpcore
import httpx
import msgspec
import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from marketplace.core.db import utcnow
from marketplace.core.events import publish
from marketplace.core.security import decrypt
from marketplace.core.ssrf import UnsafeURL, check_url_shape, resolve_public
from marketplace.settings import get_settings
from webhooks.models import WebhookEndpoint, new_attempt_id
from webhooks.relay import DELIVER_JOB

log = structlog.get_logger("marketplace.webhooks")

TIMEOUT_S = 15.0
LEASE_S = 60
SNIPPET_BYTES = 1024
MAX_RETRY_AFTER_S = 24 * 3600
USER_AGENT = "marketplace-webhooks/1.0"

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host once, applies the SSRF rule to every address, and connects to a checked
    address: a DNS answer that changes between the check and the connect (rebinding) cannot slip
    a private address in. TLS still verifies the certificate against the URL's host name."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if not get_settings().allow_private_networks:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise httpcore.ConnectError(f"host {host!r} does not resolve") from exc
            addresses = [str(info[4][0]) for info in infos]
            for address in addresses:
                literal = f"[{address}]" if ":" in address else address
                try:
                    await resolve_public(f"http://{literal}:{port}/")
                except UnsafeURL as exc:
                    raise httpcore.ConnectError(f"refused: {host} {exc}") from exc
            host = addresses[0]
        return await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def http_client() -> httpx.AsyncClient:
    """The worker's one shared client (per event loop): pooled keep-alive, 15 s, no redirects,
    no proxies from the environment, connections only to addresses the SSRF rule allows."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for stale in [lp for lp in _clients if lp.is_closed()]:
            del _clients[stale]
        transport = httpx.AsyncHTTPTransport(
            trust_env=False, limits=httpx.Limits(max_connections=256, max_keepalive_connections=128))
        transport._pool._network_backend = PublicOnlyBackend()  # httpx has no public knob for this
        client = httpx.AsyncClient(transport=transport, timeout=TIMEOUT_S, follow_redirects=False,
                                   trust_env=False, headers={"user-agent": USER_AGENT})
        _clients[loop] = client
    return client


@lru_cache(maxsize=4096)
def _signer(secret_encrypted: str) -> Webhook:
    return Webhook(decrypt(secret_encrypted))


def sign(event_id: str, timestamp: datetime, body: str, secrets_encrypted: list[str]) -> str:
    return " ".join(_signer(s).sign(event_id, timestamp, body) for s in secrets_encrypted)


def body_for(event_type: str, created_at: datetime, data_json: str) -> str:
    """`{type, timestamp, data}`; `data_json` is the event's JSONB as PostgreSQL prints it (stable)."""
    created = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    head = msgspec.json.encode({"type": event_type, "timestamp": created}).decode()
    return f'{head[:-1]},"data":{data_json}}}'


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def jittered(seconds: float) -> float:
    return seconds * random.uniform(0.9, 1.1) if seconds > 0 else 0.0


# The hot path talks to PostgreSQL through a small asyncpg pool of its own: one round trip to
# claim, one to record (data-modifying CTEs), no ORM. Rare paths (disabling an endpoint, which
# publishes an event) use the ORM session.
CLAIM = """
WITH claimed AS (
    UPDATE webhook_deliveries SET lease_until = now() + make_interval(secs => $2)
    WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now())
    RETURNING id, event_id, endpoint_id, attempts, trigger
)
SELECT c.id, c.event_id, c.endpoint_id, c.attempts, c.trigger,
       e.type, e.data::text AS data, e.created_at,
       w.url, w.enabled, w.secret_encrypted, w.previous_secret_encrypted, w.previous_secret_expires_at,
       w.failing_since
FROM claimed c JOIN events e ON e.id = c.event_id JOIN webhook_endpoints w ON w.id = c.endpoint_id
"""

CANCEL = """
UPDATE webhook_deliveries SET status = 'canceled', lease_until = NULL, finished_at = now() WHERE id = $1
"""

RECORD = """
WITH attempt AS (
    INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, event_type, attempt, trigger,
                                  succeeded, status_code, latency_ms, response_snippet, error, next_attempt_at, at)
    VALUES ($1, $2, $3, $4, $5, $6::int, $7, $8::boolean, $9, $10, $11, $12, $13::timestamptz, $14::timestamptz)
), delivery AS (
    UPDATE webhook_deliveries SET status = $15::text, attempts = $6::int,
           next_attempt_at = COALESCE($13::timestamptz, $14::timestamptz), job_id = $16::text, lease_until = NULL,
           finished_at = CASE WHEN $15::text = 'pending' THEN NULL ELSE $14::timestamptz END
    WHERE id = $2
), succeeded AS (
    UPDATE webhook_endpoints SET failing_since = NULL, last_success_at = $14::timestamptz
    WHERE id = $3 AND $8::boolean
      AND (failing_since IS NOT NULL OR last_success_at IS NULL OR last_success_at < $17::timestamptz)
)
UPDATE webhook_endpoints SET failing_since = $14::timestamptz
WHERE id = $3 AND NOT $8::boolean AND failing_since IS NULL
"""

_pg_pools: dict[asyncio.AbstractEventLoop, asyncpg.Pool] = {}


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Our statements leave no session state behind; skip asyncpg's RESET ALL round trip."""


async def pg_pool() -> asyncpg.Pool:
    loop = asyncio.get_running_loop()
    pool = _pg_pools.get(loop)
    if pool is None:
        for stale in [lp for lp in _pg_pools if lp.is_closed()]:
            del _pg_pools[stale]
        dsn = (get_settings().database_url or "").replace("postgresql+asyncpg://", "postgresql://")
        pool = _pg_pools[loop] = await asyncpg.create_pool(dsn, min_size=1, max_size=10, reset=_no_reset,
                                                           max_inactive_connection_lifetime=60)
    return pool


@dataclass
class Outcome:
    succeeded: bool
    status_code: int | None = None
    snippet: str | None = None
    error: str | None = None
    retry_after: float | None = None
    latency_ms: int = 0


async def precheck(url: str) -> None:
    """The cheap part of the SSRF rule before sending: the URL's shape, and its host when it is an
    address. Host names are checked by PublicOnlyBackend when it connects (one DNS lookup, and the
    address checked is the address connected to)."""
    host, _ = check_url_shape(url)
    if get_settings().allow_private_networks:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    await resolve_public(url)  # a literal address: no DNS involved


async def post(url: str, body: str, headers: dict[str, str]) -> Outcome:
    started = time.perf_counter()
    try:
        await precheck(url)
    except UnsafeURL as exc:
        return Outcome(False, error=f"refused: the URL {exc}")
    try:
        async with http_client().stream("POST", url, content=body.encode(), headers=headers) as response:
            chunks = bytearray()
            async for chunk in response.aiter_raw():
                chunks += chunk
                if len(chunks) >= SNIPPET_BYTES:
                    break
            latency = int((time.perf_counter() - started) * 1000)
            snippet = bytes(chunks[:SNIPPET_BYTES]).decode("utf-8", errors="replace")
            code = response.status_code
            ok = 200 <= code < 300
            retry_after = None
            if code in (429, 503):
                retry_after = retry_after_seconds(response.headers.get("retry-after"), utcnow())
            return Outcome(ok, code, snippet, None if ok else f"HTTP {code}", retry_after, latency)
    except httpx.TimeoutException:
        return Outcome(False, error=f"timed out after {TIMEOUT_S:.0f} s",
                       latency_ms=int((time.perf_counter() - started) * 1000))
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500],
                       latency_ms=int((time.perf_counter() - started) * 1000))


async def deliver(sessionmaker: async_sessionmaker[AsyncSession], pool: ArqRedis, delivery_id: str) -> str:
    """Make the next attempt of one delivery. Returns what happened (for logs and tests)."""
    db = await pg_pool()
    row = await db.fetchrow(CLAIM, delivery_id, LEASE_S)
    if row is None:
        return "skipped"  # finished, canceled, deleted, or another job holds the lease
    if not row["enabled"]:
        await db.execute(CANCEL, delivery_id)
        return "canceled"
    now = utcnow()
    secrets_encrypted = [row["secret_encrypted"]]
    if row["previous_secret_encrypted"] and row["previous_secret_expires_at"] and \
            row["previous_secret_expires_at"] > now:
        secrets_encrypted.append(row["previous_secret_encrypted"])
    body = body_for(row["type"], row["created_at"], row["data"])
    headers = {
        "content-type": "application/json",
        "webhook-id": row["event_id"],
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(row["event_id"], now, body, secrets_encrypted),
    }
    outcome = await post(row["url"], body, headers)
    return await record(sessionmaker, pool, row, outcome)


async def record(sessionmaker: async_sessionmaker[AsyncSession], pool: ArqRedis, row: Any,
                 outcome: Outcome) -> str:
    settings = get_settings()
    schedule = settings.retry_schedule
    now = utcnow()
    attempt = row["attempts"] + 1
    delay: float | None = None
    disable_reason: str | None = None
    if outcome.succeeded:
        status = "succeeded"
    elif outcome.status_code == 410:
        status, disable_reason = "failed", "the endpoint answered 410 Gone"
    else:
        failing_since = row["failing_since"] or now
        if now - failing_since >= timedelta(days=settings.webhook_disable_after_days):
            status = "failed"
            disable_reason = f"no successful delivery since {failing_since.isoformat()}"
        elif attempt < len(schedule):
            status = "pending"
            delay = outcome.retry_after if outcome.retry_after is not None else jittered(schedule[attempt])
        else:
            status = "failed"
    next_at = now + timedelta(seconds=delay) if delay is not None else None
    job_id = f"{row['id']}:{attempt + 1}" if delay is not None else None
    args = (new_attempt_id(), row["id"], row["endpoint_id"], row["event_id"], row["type"], attempt, row["trigger"],
            outcome.succeeded, outcome.status_code, outcome.latency_ms, outcome.snippet, outcome.error, next_at, now,
            status, job_id, now - timedelta(seconds=60))
    if disable_reason is None:
        await (await pg_pool()).execute(RECORD, *args)
    else:
        async with sessionmaker.begin() as session:  # rare: the ORM, because it publishes an event
            connection = await session.connection()
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.execute(RECORD, *args)
            await disable_endpoint(session, row["endpoint_id"], disable_reason)
    if job_id is not None:
        await pool.enqueue_job(DELIVER_JOB, row["id"], _job_id=job_id, _defer_by=delay or None)
    return status if delay is None else f"retry in {delay:.1f}s"


async def disable_endpoint(session: AsyncSession, endpoint_id: str, reason: str) -> None:
    """Disable the endpoint and tell its owner (through their other endpoints)."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None or not endpoint.enabled:
        return
    endpoint.enabled = False
    endpoint.disabled_reason = reason[:200]
    endpoint.updated_at = utcnow()
    await session.flush()  # the relay that follows must not send endpoint.disabled to this endpoint
    publish(session, "endpoint.disabled", {"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason},
            partner_id=endpoint.partner_id, consumer_id=endpoint.consumer_id)
    log.warning("webhook_endpoint_disabled", endpoint_id=endpoint.id, reason=reason)
