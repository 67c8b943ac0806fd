"""A minimal auto-pipelining Redis client for the gateway's one command per call (EVALSHA).

redis-py's asyncio client costs more CPU per command than the rest of the hot path together
(connection pool checkout, retry wrapper, command packing). Here: ONE connection per process; every
concurrent caller writes its command straight onto the socket and waits on a future; replies come
back in order (RESP guarantees it) and are parsed by hiredis. A watchdog fails every waiter and
drops the connection when the oldest reply is later than `timeout`, so a dead Redis answers
ConnectionError within about `timeout` seconds; the next call reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


def _encode(args: tuple[Any, ...]) -> bytes:
    return b"*%d\r\n" % len(args) + bulk_strings(args)


def bulk_strings(args: tuple[Any, ...] | list[Any]) -> bytes:
    """RESP bulk strings for `args`, without the array header (callers may cache parts of a command)."""
    out = []
    for arg in args:
        if isinstance(arg, bytes):
            b = arg
        elif isinstance(arg, str):
            b = arg.encode()
        else:
            b = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: FastRedis) -> None:
        self.client = client
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.client.waiters
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.client.fail(RedisConnectionError(f"protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiters:
                continue
            future, _ = waiters.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                future.set_exception(NoScriptError(message) if message.startswith("NOSCRIPT")
                                     else ResponseError(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.fail(RedisConnectionError("connection to Redis lost"), self)


class FastRedis:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        self.db = int((parts.path or "/0").strip("/") or 0)
        self.timeout = timeout
        self.protocol: _Protocol | None = None
        self.connecting: asyncio.Future[_Protocol] | None = None
        self.waiters: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.watchdog: asyncio.Task[None] | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        self.protocol = protocol
        if self.watchdog is None or self.watchdog.done():
            self.watchdog = loop.create_task(self._watch())
        if self.password:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            await self.execute(*auth)
        if self.db:
            await self.execute("SELECT", self.db)
        return protocol

    async def _protocol(self) -> _Protocol:
        if self.protocol is not None:
            return self.protocol
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
            self.connecting.add_done_callback(self._connected)
        return await asyncio.shield(self.connecting)

    def _connected(self, future: asyncio.Future[_Protocol]) -> None:
        self.connecting = None
        if not future.cancelled():
            future.exception()  # retrieved here; awaiting callers re-raise it

    async def execute(self, *args: Any) -> Any:
        return await self.execute_encoded(_encode(args))

    async def execute_encoded(self, payload: bytes) -> Any:
        """Send one command already encoded as a RESP array (see `bulk_strings`)."""
        protocol = self.protocol or await self._protocol()
        transport = protocol.transport
        if transport is None or transport.is_closing():
            self.fail(RedisConnectionError("connection to Redis closed"), protocol)
            raise RedisConnectionError("connection to Redis closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append((future, time.monotonic()))
        transport.write(payload)
        return await future

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str) -> str:
        sha = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    def fail(self, exc: Exception, protocol: _Protocol | None = None) -> None:
        """Drop the connection and fail everything still waiting on it."""
        if protocol is not None and protocol is not self.protocol:
            return
        current, self.protocol = self.protocol, None
        waiters, self.waiters = self.waiters, collections.deque()
        for future, _ in waiters:
            if not future.done():
                future.set_exception(exc)
        if current is not None and current.transport is not None:
            current.transport.abort()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.timeout / 4))
            if self.waiters and time.monotonic() - self.waiters[0][1] > self.timeout:
                self.fail(RedisConnectionError("Redis did not answer in time"))

    async def aclose(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.fail(RedisConnectionError("client closed"))
