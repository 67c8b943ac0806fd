"""ASGI middleware for management routes: request ids and access logs, and Idempotency-Key.

The gateway is excluded from both: it sets its own request id (which it must generate itself,
since it is the usage idempotency key) and keeps its hot path short.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from marketplace.core import redis as redis_keys
from marketplace.core.errors import PROBLEM_JSON, problem_body
from marketplace.core.ids import new_id
from marketplace.core.security import decrypt, encrypt

log = structlog.get_logger("marketplace.http")

GATEWAY_PREFIX = "/gateway/"
IDEMPOTENCY_TTL = 24 * 3600
IN_FLIGHT_TTL = 60
MAX_BODY = 10_000_000  # Litestar's default request_max_body_size


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Litestar runs middleware after routing, when a mount has already cut scope["path"] down
        # to the part below it: look at the raw path as well.
        if scope["type"] != "http" or scope["path"].startswith(GATEWAY_PREFIX) \
                or (scope.get("raw_path") or b"").startswith(GATEWAY_PREFIX.encode()):
            await self.app(scope, receive, send)
            return
        request_id = new_id("request")
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("request", method=scope["method"], path=scope["path"], status=status,
                     ms=round((time.perf_counter() - started) * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")


def _seal(record: dict[str, Any]) -> str:
    # Stored responses can hold secrets shown once (API keys, client secrets): encrypted at rest.
    return encrypt(json.dumps(record))


def _unseal(stored: bytes | str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(decrypt(stored.decode() if isinstance(stored, bytes) else stored))
    return result


class IdempotencyMiddleware:
    """Stripe-style `Idempotency-Key` for POSTs under /v1: the first response (below 500) is kept
    for 24 hours and replayed for a retry with the same key and body; the same key with another
    body is refused (422); a retry while the first is still running gets 409."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        idem_key = _header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if not idem_key or scope["method"] != "POST" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        limit = getattr(scope["app"], "request_max_body_size", None) or MAX_BODY
        buffer = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
            if len(buffer) > limit:  # the body is buffered to fingerprint it: never without a cap
                await self._problem(send, 413, "Request body too large",
                                    f"The body is larger than {limit} bytes. Send a smaller request.")
                return
        body = bytes(buffer)
        redis = scope["app"].state.redis
        caller = hashlib.sha256((_header(scope, b"authorization") or "").encode()).hexdigest()[:32]
        store_key = redis_keys.key("idem", caller, hashlib.sha256(idem_key.encode()).hexdigest())
        fingerprint = hashlib.sha256(scope["method"].encode() + scope["path"].encode() + b"\0" + body).hexdigest()

        if len(idem_key) > 255:
            await self._problem(send, 400, "Idempotency-Key too long", "Use a key of at most 255 characters, such as a UUID.")
            return
        stored = await redis.get(store_key)
        if stored is None and await redis.set(store_key, _seal({"fp": fingerprint, "pending": True}),
                                              nx=True, ex=IN_FLIGHT_TTL):
            await self._run_and_store(scope, body, send, redis, store_key, fingerprint)
            return
        if stored is None:
            stored = await redis.get(store_key)
        record = _unseal(stored) if stored else {"pending": True, "fp": fingerprint}
        if record["fp"] != fingerprint:
            await self._problem(send, 422, "Idempotency key reused",
                                "This Idempotency-Key was already used with a different request. "
                                "Use a new key for a new request.")
        elif record.get("pending"):
            await self._problem(send, 409, "Request in progress",
                                "A request with this Idempotency-Key is still being processed. Retry in a moment.")
        else:
            headers = [(k.encode(), v.encode()) for k, v in record["headers"]] + [(b"idempotent-replayed", b"true")]
            await send({"type": "http.response.start", "status": record["status"], "headers": headers})
            await send({"type": "http.response.body", "body": bytes.fromhex(record["body"])})

    async def _run_and_store(self, scope: Scope, body: bytes, send: Send, redis: Any, store_key: str,
                             fingerprint: str) -> None:
        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
                               if k.lower() not in (b"x-request-id", b"content-length", b"set-cookie"))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            await redis.delete(store_key)
            raise
        if status >= 500:
            await redis.delete(store_key)  # a server error may be retried with the same key
            return
        record = {"fp": fingerprint, "status": status, "headers": headers, "body": b"".join(chunks).hex()}
        await redis.set(store_key, _seal(record), ex=IDEMPOTENCY_TTL)

    @staticmethod
    async def _problem(send: Send, status: int, title: str, detail: str) -> None:
        payload = json.dumps(problem_body(status, title, detail, "idempotency")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
