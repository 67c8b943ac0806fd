"""Mounts the gateway (a raw ASGI app, see proxy.py) at /gateway and owns its process resources:
the shared upstream client, a Redis client with short timeouts, the invalidation listener, and the
statistics flusher (stats.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, asgi
from redis.asyncio import Redis

from marketplace.gateway.cache import GatewayCache
from marketplace.gateway.fastredis import FastRedis
from marketplace.gateway.proxy import Gateway, upstream_client
from marketplace.gateway.stats import forget, new_stats
from marketplace.settings import get_settings


@asgi("/gateway", is_mount=True, copy_scope=False, include_in_schema=False)
async def gateway_mount(scope: Any, receive: Any, send: Any) -> None:
    await scope["app"].state.gateway(scope, receive, send)


def gateway_redis(url: str, timeout: float) -> FastRedis:
    return FastRedis(url, timeout)


def install_fast_dispatch(app: Litestar, gateway: Gateway) -> None:
    """Send /gateway/… calls straight to the gateway, before Litestar's routing and middleware.

    Measured (bench/gateway.py): Litestar's exception middleware, router and the app middleware
    cost about as much CPU per call as the gateway's own work. The @asgi mount above stays as the
    documented route (and the fallback); this only short-cuts the dispatch to it.
    """
    original = app.asgi_handler

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/gateway/"):
            await gateway(scope, receive, send)
        else:
            await original(scope, receive, send)

    app.asgi_handler = dispatch


@contextlib.asynccontextmanager
async def gateway_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings = get_settings()
    http = upstream_client(pool_size=settings.gateway_pool_size, connect_timeout=settings.gateway_connect_timeout,
                           timeout=settings.gateway_timeout)
    redis = gateway_redis(settings.redis_url or "", settings.gateway_redis_timeout)
    redis_aux = Redis.from_url(settings.redis_url or "", decode_responses=False, socket_connect_timeout=2,
                               socket_timeout=5)
    listener_redis = Redis.from_url(settings.redis_url or "", decode_responses=False, socket_connect_timeout=2)
    cache = GatewayCache(app.state.sessionmaker, settings.gateway_cache_ttl)
    stats = new_stats()
    gateway = Gateway(cache=cache, redis=redis, redis_aux=redis_aux, http=http, stats=stats)
    app.state.gateway = gateway
    install_fast_dispatch(app, gateway)
    listener = asyncio.create_task(cache.listen(listener_redis))
    flusher = asyncio.create_task(stats.run(app.state.sessionmaker))
    try:
        yield
    finally:
        for task in (listener, flusher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if gateway.tasks:
            await asyncio.wait(list(gateway.tasks), timeout=2)
        await stats.close(app.state.sessionmaker)  # the last window (at most FLUSH_EVERY seconds)
        forget(stats)
        await gateway.http.close()
        await redis.aclose()
        await redis_aux.aclose()
        await listener_redis.aclose()


ROUTES = [gateway_mount]
LIFESPANS = [gateway_lifespan]
