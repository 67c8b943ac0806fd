"""The gateway's HTTP/1.1 upstream client (marketplace/gateway/upstream.py) against scripted raw
TCP servers on loopback: framing, keep-alive reuse, streaming both ways, errors and timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from marketplace.gateway.upstream import Origin, UpstreamClient, UpstreamError, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def origin(self) -> Origin:
        assert self.server is not None
        return Origin(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1")

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        """The head, and the body (Content-Length or chunked, de-chunked)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        lower = head.lower()
        body = b""
        if b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        elif b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        return head, body


def client(**kw: float) -> UpstreamClient:
    return UpstreamClient(pool_size=kw.pop("pool_size", 8), connect_timeout=kw.pop("connect_timeout", 1),  # type: ignore[arg-type]
                          timeout=kw.pop("timeout", 2))


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keep_alive_reuses_one_connection_and_sends_host_path_and_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await srv.read_request(reader)
            writer.write(ok(b"hello"))
            await writer.drain()

    async with Server(handler) as srv:
        http = client()
        for i in range(3):
            async with http.request("GET", srv.origin, b"/x/%d?q=1" % i, [(b"x-a", b"1")]) as resp:
                assert resp.status == 200 and resp.content_length == 5
                assert (b"content-type", b"text/plain") in resp.headers
                assert await resp.read() == b"hello"
        await http.close()
    assert srv.connections == 1
    first = srv.requests[0]
    assert first.startswith(b"GET /v1/x/0?q=1 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nx-a: 1\r\n" in first


async def test_chunked_and_until_close_bodies_are_decoded_and_connection_close_is_honoured() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()
            await srv.read_request(reader)
            writer.write(ok(b"bye", b"connection: close\r\n"))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with Server(handler) as srv:
        http = client()
        async with http.request("GET", srv.origin, b"/c", []) as resp:
            assert resp.content_length is None
            assert b"".join([c async for c in resp.chunks()]) == b"hello world"
        async with http.request("GET", srv.origin, b"/c", []) as resp:  # same connection, then closed
            assert await resp.read() == b"bye"
        async with http.request("GET", srv.origin, b"/c", []) as resp:
            assert await resp.read() == b"until the end"
        await http.close()
    assert srv.connections == 2


async def test_request_bodies_bytes_streamed_with_length_and_streamed_chunked() -> None:
    bodies: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            _, body = await srv.read_request(reader)
            bodies.append(body)
            writer.write(ok(b"%d" % len(body)))
            await writer.drain()

    async def stream(parts: int, size: int) -> AsyncIterator[bytes]:
        for i in range(parts):
            yield bytes([65 + i % 26]) * size
            await asyncio.sleep(0)

    async with Server(handler) as srv:
        http = client()
        async with http.request("POST", srv.origin, b"/u", [], b"abc") as resp:
            assert await resp.read() == b"3"
        async with http.request("POST", srv.origin, b"/u", [], stream(64, 65536), b"%d" % (64 * 65536)) as resp:
            assert await resp.read() == b"%d" % (64 * 65536)
        async with http.request("POST", srv.origin, b"/u", [], stream(3, 10)) as resp:
            assert await resp.read() == b"30"
        await http.close()
    assert bodies[0] == b"abc" and len(bodies[1]) == 64 * 65536 and bodies[2] == b"A" * 10 + b"B" * 10 + b"C" * 10
    assert b"transfer-encoding: chunked" in srv.requests[2] and b"content-length: 4194304" in srv.requests[1]


async def test_a_large_streamed_answer_arrives_whole_with_flow_control() -> None:
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"z" * 65536)
            await writer.drain()

    async with Server(handler) as srv:
        http = client(timeout=20)
        received = 0
        async with http.request("GET", srv.origin, b"/big", []) as resp:
            async for chunk in resp.chunks():
                received += len(chunk)
                assert resp.buffered <= 4 * 1024 * 1024  # reading pauses well before the whole body
                await asyncio.sleep(0)
        await http.close()
    assert received == size


async def test_head_and_204_answers_have_no_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            head, _ = await srv.read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with Server(handler) as srv:
        http = client()
        async with http.request("HEAD", srv.origin, b"/h", []) as resp:
            assert resp.no_body and resp.content_length == 1234 and await resp.read() == b""
        async with http.request("DELETE", srv.origin, b"/h", []) as resp:
            assert resp.status == 204 and await resp.read() == b""
        async with http.request("DELETE", srv.origin, b"/h", []) as resp:
            assert resp.status == 204
        await http.close()
    assert srv.connections == 2  # the HEAD's connection is not reused; the 204s share one


async def test_refused_connection_and_no_answer_are_errors_and_timeouts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = Origin(f"http://127.0.0.1:{s.getsockname()[1]}")
    http = client(timeout=0.5)
    with pytest.raises(UpstreamError):
        async with http.request("GET", dead, b"/", []):
            pass

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        await asyncio.sleep(5)

    async with Server(silent) as srv:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            async with http.request("GET", srv.origin, b"/", []):
                pass
        assert 0.4 < time.monotonic() - started < 2
    await http.close()
    assert http.limit._value == 8  # every call gave its slot back


async def test_an_answer_cut_mid_body_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part" if n == 1 else b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with Server(handler) as srv:
        http = client()
        with pytest.raises(UpstreamError, match="mid-answer"):
            async with http.request("GET", srv.origin, b"/", []) as resp:
                await resp.read()
        with pytest.raises(UpstreamError, match="invalid HTTP"):
            async with http.request("GET", srv.origin, b"/", []):
                pass
        await http.close()


async def test_a_pooled_connection_closed_by_the_upstream_is_retried_once_for_idempotent_calls() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await srv.read_request(reader)  # the next call arrives on the kept-alive connection...
        writer.transport.abort()  # ...and the upstream drops it without answering

    async with Server(handler) as srv:
        http = client()
        for _ in range(2):
            async with http.request("GET", srv.origin, b"/", []) as resp:
                assert await resp.read() == b"first"
        assert srv.connections == 2  # the GET was retried on a new connection
        with pytest.raises(UpstreamError):  # a POST is not: the upstream may have acted on it
            async with http.request("POST", srv.origin, b"/", [], b"x"):
                pass
        await http.close()


async def test_a_header_with_a_line_break_is_never_written() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)

    async with Server(handler) as srv:
        http = client()
        with pytest.raises(ValueError):
            async with http.request("GET", srv.origin, b"/", [(b"x-a", b"1\r\nx-injected: 1")]):
                pass
        await http.close()
    assert srv.requests == []


def _self_signed(tmp_path, name: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_https_upstreams_are_verified_with_sni_and_a_wrong_certificate_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    good_cert, good_key = _self_signed(tmp_path, "localhost")
    wrong_cert, wrong_key = _self_signed(tmp_path, "other.example")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"secure"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    trust = ssl.create_default_context(cafile=good_cert)
    trust.load_verify_locations(cafile=wrong_cert)
    for cert, key, expect_ok in ((good_cert, good_key, True), (wrong_cert, wrong_key, False)):
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        http = UpstreamClient(pool_size=4, connect_timeout=2, timeout=3, ssl_context=trust)
        try:
            if expect_ok:
                async with http.request("GET", Origin(f"https://localhost:{port}/v1"), b"/x", []) as resp:
                    assert resp.status == 200 and await resp.read() == b"secure"
            else:  # the certificate is valid, but for another name: hostname verification refuses it
                with pytest.raises(UpstreamError):
                    async with http.request("GET", Origin(f"https://localhost:{port}/v1"), b"/x", []) as resp:
                        pass
        finally:
            await http.close()
            server.close()
