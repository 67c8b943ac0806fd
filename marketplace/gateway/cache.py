"""The gateway's process-local caches and the pub/sub listener that keeps them honest.

Entries are loaded from PostgreSQL on a miss (one query per API or key, single-flight), then
served from memory. `core.cache.invalidate_after_commit` publishes `topic:ident` on
`core.cache.channel()` after a commit; the listener drops matching entries within milliseconds.
A TTL (GATEWAY_CACHE_TTL) is the safety net for a missed message, and the caches are cleared
whenever the listener (re)connects, since messages may have been lost while it was away.
A generation counter stops a load that raced with an invalidation from caching stale data.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from marketplace.core.cache import channel
from marketplace.core.security import decrypt
from marketplace.gateway.records import ApiEntry, Caller, EndpointEntry, EndpointMatcher, PlanOffer
from marketplace.gateway.upstream import Origin
from marketplace.subscriptions.models import ApiKey, Subscription
from marketplace.subscriptions.periods import period_containing
from oauth.keys import refresh_key_ring
from partners.models import Partner
from partners.publishing.models import Api, Endpoint, Plan, PlanVersion

log = structlog.get_logger("marketplace.gateway")

MAX_ENTRIES = 200_000
NEGATIVE_TTL = 5.0


def policy_header(per_second: int, per_minute: int, quota: int, period_seconds: int) -> str:
    parts = []
    if per_second > 0:
        parts.append(f'"per-second";q={per_second};w=1')
    if per_minute > 0:
        parts.append(f'"per-minute";q={per_minute};w=60')
    if quota >= 0:
        parts.append(f'"quota";q={quota};w={period_seconds}')
    return ", ".join(parts)


def _ts(value: datetime) -> float:
    return value.timestamp()


async def load_api(session: AsyncSession, slug: str) -> ApiEntry | None:
    row = (await session.execute(select(Api, Partner.status).join(Partner, Partner.id == Api.partner_id)
                                 .where(Api.slug == slug))).first()
    if row is None:
        return None
    api, partner_status = row
    endpoints = (await session.scalars(select(Endpoint).where(Endpoint.api_id == api.id)
                                       .order_by(Endpoint.created_at, Endpoint.id))).all()
    offers = (await session.execute(
        select(Plan.id, PlanVersion.name, PlanVersion.rate_per_second, PlanVersion.rate_per_minute,
               PlanVersion.quota_limit)
        .join(PlanVersion, (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version))
        .where(Plan.api_id == api.id, Plan.status == "active")
    )).all()
    try:
        secret = decrypt(api.proxy_secret_encrypted) if api.proxy_secret_encrypted else ""
    except Exception:  # an undecryptable secret must not take the gateway down; the upstream can tell
        log.warning("proxy_secret_undecryptable", api_id=api.id)
        secret = ""
    try:
        origin = Origin(api.upstream_url)
    except ValueError:
        log.warning("upstream_url_unusable", api_id=api.id)
        origin = None
    return ApiEntry(
        # A suspended partner's APIs are suspended too (operators suspend either).
        id=api.id, slug=api.slug, partner_id=api.partner_id,
        status="suspended" if partner_status == "suspended" and api.status == "published" else api.status,
        upstream=api.upstream_url.rstrip("/"), proxy_secret=secret, origin=origin,
        proxy_headers=[(b"x-marketplace-proxy-secret", secret.encode("latin-1", "replace"))],
        matcher=EndpointMatcher([EndpointEntry(e.id, e.method.upper(), e.path, e.scope, max(int(e.weight), 0))
                                 for e in endpoints]),
        plans=[PlanOffer(id=o[0], name=o[1], per_second=o[2], per_minute=o[3], quota=o[4]) for o in offers],
    )


async def load_caller(session: AsyncSession, key_hash: str) -> Caller | None:
    row = (await session.execute(
        select(ApiKey, Subscription, PlanVersion)
        .join(Subscription, Subscription.id == ApiKey.subscription_id)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .where(ApiKey.key_hash == key_hash)
    )).first()
    if row is None:
        return None
    key, sub, plan = row
    return caller_for(sub, plan, key)


async def load_consumer_caller(session: AsyncSession, ident: str) -> Caller | None:
    """The caller record of a consumer's live subscription to an API (`ident` = "consumer:api"):
    what the bearer path bills, since a consumer has at most one live subscription per API."""
    consumer_id, _, api_id = ident.partition(":")
    row = (await session.execute(
        select(Subscription, PlanVersion)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .where(Subscription.consumer_id == consumer_id, Subscription.api_id == api_id,
               Subscription.status != "canceled")
        .order_by(Subscription.created_at.desc()).limit(1)
    )).first()
    return caller_for(row[0], row[1], None) if row else None


def caller_for(sub: Subscription, plan: PlanVersion, key: ApiKey | None) -> Caller:
    """The caller record for a subscription (and key); the bearer-token path builds the same."""
    per_second, per_minute = int(plan.rate_per_second or 0), int(plan.rate_per_minute or 0)
    quota = int(plan.quota_limit) if plan.quota_limit is not None else -1
    start, end = _ts(sub.current_period_start), _ts(sub.current_period_end)
    return Caller(
        key_id=key.id if key else None, consumer_id=sub.consumer_id, subscription_id=sub.id, api_id=sub.api_id,
        status=sub.status, plan_id=sub.plan_id, plan_name=plan.name, scopes=frozenset(plan.scopes or ()),
        per_second=per_second, per_minute=per_minute, quota=quota, quota_hard=bool(plan.quota_hard),
        anchor=_ts(sub.created_at), period_start=start, period_end=end,
        revoked=bool(key and key.revoked_at is not None),
        expires_at=_ts(key.expires_at) if key and key.expires_at else None,
        policy_header=policy_header(per_second, per_minute, quota, int(end - start)),
        proxy_headers=[(b"x-marketplace-consumer", sub.consumer_id.encode()),
                       (b"x-marketplace-subscription", sub.id.encode())],
    )


def roll_period(caller: Caller, now: float) -> None:
    """Move a cached caller into the period that contains `now` (pure calendar math, no I/O)."""
    anchor = datetime.fromtimestamp(caller.anchor, UTC)
    start, end = period_containing(anchor, datetime.fromtimestamp(now, UTC))
    caller.period_start, caller.period_end = start.timestamp(), end.timestamp()


class LocalCache:
    """A dict with per-entry expiry, single-flight loads and generation-guarded stores."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[str, tuple[Any, float]] = {}
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self.generation = 0

    def get(self, ident: str, now: float) -> tuple[bool, Any]:
        hit = self.entries.get(ident)
        if hit is not None and hit[1] > now:
            return True, hit[0]
        return False, None

    async def load(self, ident: str, loader: Callable[[], Awaitable[Any]]) -> Any:
        pending = self.inflight.get(ident)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.inflight[ident] = future
        generation = self.generation
        try:
            value = await loader()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self.inflight.pop(ident, None)
        if generation == self.generation:
            if len(self.entries) >= MAX_ENTRIES:
                self.entries.clear()
            ttl = self.ttl if value is not None else min(self.ttl, NEGATIVE_TTL)
            self.entries[ident] = (value, time.monotonic() + ttl)
        future.set_result(value)
        return value

    def drop(self, predicate: Callable[[str, Any], bool]) -> None:
        self.generation += 1
        for ident in [i for i, (v, _) in self.entries.items() if predicate(i, v)]:
            self.entries.pop(ident, None)

    def clear(self) -> None:
        self.generation += 1
        self.entries.clear()


class GatewayCache:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self.sessionmaker = sessionmaker
        self.apis = LocalCache(ttl)
        self.callers = LocalCache(ttl)
        self.tasks: set[asyncio.Task[Any]] = set()

    async def api(self, slug: str, now: float) -> ApiEntry | None:
        hit, value = self.apis.get(slug, now)
        if hit:
            return value  # type: ignore[no-any-return]
        return await self.apis.load(slug, lambda: self._with_session(load_api, slug))  # type: ignore[no-any-return]

    async def caller(self, key_hash: str, now: float) -> Caller | None:
        hit, value = self.callers.get(key_hash, now)
        if hit:
            return value  # type: ignore[no-any-return]
        return await self.callers.load(key_hash,  # type: ignore[no-any-return]
                                       lambda: self._with_session(load_caller, key_hash))

    async def consumer_caller(self, consumer_id: str, api_id: str, now: float) -> Caller | None:
        ident = f"{consumer_id}:{api_id}"  # cannot collide with key hashes (hex, no colon)
        hit, value = self.callers.get(ident, now)
        if hit:
            return value  # type: ignore[no-any-return]
        return await self.callers.load(ident,  # type: ignore[no-any-return]
                                       lambda: self._with_session(load_consumer_caller, ident))

    async def _with_session(self, fn: Callable[[AsyncSession, str], Awaitable[Any]], ident: str) -> Any:
        async with self.sessionmaker() as session:
            return await fn(session, ident)

    def invalidate(self, message: str) -> None:
        topic, _, ident = message.partition(":")
        if topic == "key":
            self.callers.drop(lambda h, _: h == ident)
        elif topic == "subscription":
            self.callers.drop(lambda _, c: c is not None and c.subscription_id == ident)
        elif topic in ("api", "plan", "endpoint"):
            # Publishing may name the API by id or slug, or a plan by id: drop what could depend on it.
            self.apis.drop(lambda slug, a: ident in (slug, getattr(a, "id", None)))
            self.callers.drop(lambda _, c: c is not None and ident in (c.api_id, c.plan_id))
        elif topic == "all":
            self.apis.clear()
            self.callers.clear()
        elif topic == "jwks":  # the OAuth signing key rotated: reload the public keys
            task = asyncio.get_running_loop().create_task(refresh_key_ring(self.sessionmaker))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def listen(self, redis: Redis) -> None:
        """Runs for the life of the process: drop entries named on the invalidation channel."""
        while True:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel())
                self.apis.clear()
                self.callers.clear()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self.invalidate(data.decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway_invalidation_listener_lost", error=type(exc).__name__)
                self.apis.clear()
                self.callers.clear()
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
