"""The gateway's HTTP/1.1 upstream client: an asyncio protocol per connection, httptools (llhttp)
for parsing, a keep-alive pool per origin. Small on purpose: only what a reverse proxy needs.

Why not a library (docs/gateway.md, "Choosing the upstream client", has the numbers): on this kind
of machine aiohttp's `ClientSession.request` costs about 40 µs of CPU per call and pyreqwest
(reqwest on its own Rust thread) 17 to 50 µs (its cross-thread hand-off degrades when the CPU is
contended, which is the normal state of a busy gateway), against about 7 µs for this client, for
the same small request. At the gateway's scale that is the difference between meeting the
throughput target or not.

What it does:
- connections pooled per (scheme, host, port), reused LIFO while the upstream keeps them alive
  (`Connection: close`, HTTP/1.0, errors and abandoned bodies close them); idle ones expire
  after `idle_timeout`; at most `pool_size` calls in flight (others wait);
- request bodies: bytes (Content-Length) or an async iterator (the client's Content-Length if it
  sent one, else chunked), written with transport flow control;
- responses: status, raw headers (bytes), body read whole (`read`) or streamed (`chunks`, with
  `pause_reading` past `BUFFER_HIGH` buffered bytes); Content-Length, chunked and read-until-close
  bodies (httptools decodes chunked framing); HEAD and 204/304 answers have no body;
- one deadline per call (`timeout`: connect, send, answer and body) → `UpstreamTimeout`; a connect
  bounded by `connect_timeout` too; refused/reset/protocol errors → `UpstreamError`;
- a call on a reused connection that the upstream had closed meanwhile (no answer byte came back)
  is retried once on a new connection, only for idempotent methods without a streamed body.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httptools

from marketplace.core.ssrf import UnsafeURL, public_addresses

BUFFER_HIGH = 256 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamError(Exception):
    """The upstream could not be reached or broke the HTTP exchange."""


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The upstream did not answer (or finish its answer) within the call's timeout."""


class _Stale(UpstreamError):
    """A pooled connection was closed by the upstream before it answered anything."""


class Origin:
    """Where an upstream URL points: parsed once per API (the gateway caches it)."""

    __slots__ = ("host", "host_header", "key", "path_prefix", "port", "ssl")

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.ssl = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.ssl else 80)
        default = 443 if self.ssl else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if self.port == default else f"{host}:{self.port}").encode("idna")
        self.path_prefix = parts.path.rstrip("/").encode("ascii")
        self.key = (self.ssl, self.host, self.port)


class _Connection(asyncio.Protocol):
    def __init__(self, client: UpstreamClient, key: tuple[bool, str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.interim = False
        self._reset()
        self.write_paused: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self.response: Response | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.got_bytes = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.response is None:  # bytes nobody asked for: the connection is no longer usable
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.response._fail(UpstreamError("the upstream switched protocols"))
            self.abort()
        except httptools.HttpParserError as exc:
            self.response._fail(UpstreamError(f"invalid HTTP from the upstream: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.headers_done and exc is None and response.until_close:
                response._finish()  # a body delimited by the connection's end
            elif not self.got_bytes and response.reused:
                response._fail(_Stale("the pooled connection was closed by the upstream"))
            else:
                response._fail(UpstreamError("the upstream closed the connection mid-answer"
                                             if self.got_bytes else "the upstream closed the connection"))
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_exception(UpstreamError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        if self.write_paused is None or self.write_paused.done():
            self.write_paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    # --- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103, or 100 though we never send Expect): skip it
            self.headers = []
            self.interim = True
            return
        response._headers(status, self.headers, self.parser.should_keep_alive())
        if response.no_body:
            # HEAD (and 204/304): no body follows whatever the headers say. httptools cannot be
            # told so for HEAD, so such a connection is not reused.
            if response.method_head:
                response.keep_alive = False
            response._finish()

    def on_body(self, body: bytes) -> None:
        if self.response is not None and not self.response.complete:
            self.response._data(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.response is not None and not self.response.complete:
            self.response._finish()

    # --- helpers ----------------------------------------------------------------------------

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Response:
    """An upstream answer. `status`, `headers` (raw, bytes) and `content_length` once `start`
    returned; then the body with `read()` or `chunks()`. Always `release()` (the client does it
    in `request`'s context manager)."""

    __slots__ = ("_waiter", "buffered", "chunks_", "complete", "conn", "content_length", "error", "headers",
                 "headers_done", "keep_alive", "method_head", "no_body", "reused", "status", "until_close")

    def __init__(self, conn: _Connection, method_head: bool, reused: bool) -> None:
        self.conn = conn
        self.method_head = method_head
        self.reused = reused
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.no_body = False
        self.until_close = False
        self.error: BaseException | None = None
        self.chunks_: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._waiter: asyncio.Future[None] | None = None

    # called by the connection
    def _headers(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        chunked = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    self.content_length = None
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        self.no_body = self.method_head or status in (204, 304)
        self.until_close = not self.no_body and not chunked and self.content_length is None
        if self.until_close:
            self.keep_alive = False
        self.headers_done = True
        self._wake()

    def _data(self, body: bytes) -> None:
        self.chunks_.append(body)
        self.buffered += len(body)
        if self.buffered > BUFFER_HIGH and self.conn.transport is not None:
            self.conn.transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # called by the user
    async def start(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read(self) -> bytes:
        """The whole body (for answers known to be small)."""
        while not self.complete:
            if self.error is not None:
                raise self.error
            await self._wait()
        body = b"".join(self.chunks_) if len(self.chunks_) != 1 else self.chunks_[0]
        self.chunks_.clear()
        self.buffered = 0
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        transport = self.conn.transport
        while True:
            if self.chunks_:
                chunk = self.chunks_.popleft()
                self.buffered -= len(chunk)
                if self.buffered <= BUFFER_HIGH // 4 and transport is not None and not self.complete:
                    transport.resume_reading()
                yield chunk
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            await self._wait()


class UpstreamClient:
    """One per process. `request` returns a started `Response` (status and headers read)."""

    def __init__(self, *, pool_size: int, connect_timeout: float, timeout: float, idle_timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.limit = asyncio.Semaphore(pool_size)
        self.idle: dict[tuple[bool, str, int], collections.deque[_Connection]] = {}
        self.ssl_context = ssl_context
        self.closed = False

    # --- connections ------------------------------------------------------------------------

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if origin.ssl:
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            context = self.ssl_context
        try:
            # New connections only (pooled ones are reused): resolve, apply the SSRF rule to every
            # address, and connect to a checked address, so a partner cannot re-point its DNS at
            # our private network after publishing (DNS rebinding).
            address = (await asyncio.wait_for(public_addresses(origin.host, origin.port), self.connect_timeout))[0]
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(self, origin.key), address, origin.port, ssl=context,
                server_hostname=origin.host if context else None), self.connect_timeout)
        except UnsafeURL as exc:
            raise UpstreamError(f"refused to connect to {origin.host}: {exc}") from None
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from None
        return conn

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self.idle.get(origin.key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.abort()
                continue
            return conn
        return None

    def _release(self, conn: _Connection, reusable: bool) -> None:
        conn._reset()
        if reusable and not conn.closed and not self.closed:
            conn.idle_since = time.monotonic()
            idle = self.idle.get(conn.key)
            if idle is None:
                idle = self.idle[conn.key] = collections.deque()
            idle.append(conn)
        else:
            conn.abort()

    # --- a call -----------------------------------------------------------------------------

    def request(self, method: str, origin: Origin, target: bytes, headers: list[tuple[bytes, bytes]],
                body: bytes | AsyncIterable[bytes] | None = None,
                content_length: bytes | None = None) -> _Call:
        """`async with client.request(...) as response:` — `target` is the path and query (already
        percent-encoded) below the origin's path; `headers` must not carry Host or framing headers
        (Content-Length / Transfer-Encoding), which the client writes."""
        return _Call(self, method, origin, target, headers, body, content_length)

    async def close(self) -> None:
        self.closed = True
        for idle in self.idle.values():
            while idle:
                idle.pop().abort()


class _Call:
    __slots__ = ("body", "client", "conn", "content_length", "expired", "headers", "method", "origin", "response",
                 "target", "timer")

    def __init__(self, client: UpstreamClient, method: str, origin: Origin, target: bytes,
                 headers: list[tuple[bytes, bytes]], body: bytes | AsyncIterable[bytes] | None,
                 content_length: bytes | None) -> None:
        self.client = client
        self.method = method
        self.origin = origin
        self.target = target
        self.headers = headers
        self.body = body
        self.content_length = content_length
        self.conn: _Connection | None = None
        self.response: Response | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False

    def _head(self, chunked: bool, length: int | None) -> bytes:
        origin = self.origin
        parts = [b"%s %s%s HTTP/1.1\r\nhost: %s" % (self.method.encode("ascii"), origin.path_prefix, self.target,
                                                    origin.host_header)]
        for name, value in self.headers:
            parts.append(name + b": " + value)
        if chunked:
            parts.append(b"transfer-encoding: chunked")
        elif length is not None:
            parts.append(b"content-length: %d" % length)
        parts.append(b"\r\n")
        head = b"\r\n".join(parts)
        lines = len(parts) + 1  # the request line and host share the first part
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise ValueError("a header carries a line break")  # CR/LF smuggled into a value
        return head

    def _timed_out(self) -> None:
        self.expired = True
        if self.response is not None:
            self.response._fail(UpstreamTimeout("the upstream did not answer in time"))
        if self.conn is not None:
            self.conn.abort()

    async def __aenter__(self) -> Response:
        client = self.client
        loop = asyncio.get_running_loop()
        await client.limit.acquire()
        self.timer = loop.call_at(loop.time() + client.timeout, self._timed_out)
        try:
            try:
                return await self._send(client, reuse=True)
            except _Stale:
                if self.method not in IDEMPOTENT or not (self.body is None or isinstance(self.body, bytes)):
                    raise UpstreamError("the upstream closed the connection before answering") from None
                return await self._send(client, reuse=False)
        except BaseException:
            self._end(False)
            raise

    async def _send(self, client: UpstreamClient, reuse: bool) -> Response:
        conn = client._pooled(self.origin) if reuse else None
        reused = conn is not None
        if conn is None:
            conn = await client._connect(self.origin)
            if self.expired:  # the call's deadline passed while connecting
                conn.abort()
                raise UpstreamTimeout("the upstream did not answer in time")
        self.conn = conn
        response = self.response = conn.response = Response(conn, self.method == "HEAD", reused)
        transport = conn.transport
        assert transport is not None
        body = self.body
        if body is None or isinstance(body, bytes | bytearray | memoryview):
            length = len(body) if body is not None else (0 if self.content_length == b"0" else None)
            head = self._head(False, length)
            transport.write(head + bytes(body) if body else head)
        else:
            length = int(self.content_length) if self.content_length is not None else None
            transport.write(self._head(length is None, length))
            await self._stream(conn, transport, body, length is None)
        await response.start()
        return response

    async def _stream(self, conn: _Connection, transport: asyncio.Transport, body: AsyncIterable[bytes],
                      chunked: bool) -> None:
        async for chunk in body:
            if conn.response is not None and conn.response.error is not None:
                raise conn.response.error
            if not chunk:
                continue
            transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if conn.write_paused is not None and not conn.write_paused.done():
                await conn.write_paused
        if chunked:
            transport.write(b"0\r\n\r\n")

    def _end(self, ok: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        conn, response = self.conn, self.response
        if conn is not None:
            reusable = ok and response is not None and response.complete and response.keep_alive \
                and response.error is None
            self.client._release(conn, reusable)
            self.conn = None
        self.client.limit.release()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._end(exc_type is None)
