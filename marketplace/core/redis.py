"""The shared Redis client and key naming. Every key goes through `key()` so that the namespace
setting can separate deployments (and test runs) that share one Redis."""

from __future__ import annotations

from arq.connections import RedisSettings
from redis.asyncio import Redis

from marketplace.settings import get_settings


def key(*parts: str) -> str:
    return ":".join((get_settings().redis_namespace, *parts))


def make_redis(url: str | None = None) -> Redis:
    return Redis.from_url(url or get_settings().redis_url or "", decode_responses=False,
                          health_check_interval=30, socket_connect_timeout=2, socket_timeout=5)


def arq_settings(url: str | None = None) -> RedisSettings:
    return RedisSettings.from_dsn(url or get_settings().redis_url or "")


def queue_name() -> str:
    return key("arq", "queue")
