"""The gateway's hot path: a raw ASGI app mounted at /gateway (no Litestar request parsing).

Per call: API by slug (cached) → endpoint (precompiled templates) → caller by key hash (cached)
→ subscription status and scope → ONE Redis round trip (admit.lua: blocked flag, per-second and
per-minute GCRA, monthly quota, usage XADD, key last-use) → proxy over one pooled HTTP/1.1 client
(upstream.py; chosen by benchmark, see docs/gateway.md), streaming both bodies → answer with X-Request-Id and rate-limit headers.

Exact billing: the Lua step enqueues the usage entry when it admits the call. When the call then
fails (no upstream answer: 502/504; or the upstream answers 5xx), a second, fire-and-forget
pipeline refunds the quota units and enqueues a `void` for the same request id; the flush job
stores that call with billable = false whichever of the two it sees first. So every call the
upstream answered below 500 is billed once, and no failed call is billed. If the gateway process
dies mid-call, after admission, the call stays billed (the upstream may well have served it).

Redis unreachable: the gateway fails closed (503 problem, Retry-After: 1) for every call — it
cannot rate-limit, enforce quotas or meter, and the usage ledger must stay exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from marketplace.core.errors import PROBLEM_JSON, TYPE_BASE
from marketplace.core.ids import new_id
from marketplace.core.redis import key as rkey
from marketplace.gateway.auth import GatewayProblem, ParsedRequest, authenticate
from marketplace.gateway.cache import GatewayCache, roll_period
from marketplace.gateway.fastredis import FastRedis, bulk_strings
from marketplace.gateway.records import ApiEntry, Caller
from marketplace.gateway.stats import GatewayStats
from marketplace.gateway.upstream import UpstreamClient, UpstreamError
from oauth.tokens import deny_list_key

log = structlog.get_logger("marketplace.gateway")

ADMIT_LUA = (Path(__file__).parent / "admit.lua").read_text()
PREFIX = b"/gateway/"

# Never forwarded upstream: hop-by-hop headers (RFC 9110 §7.6.1), the consumer's credentials,
# and anything a client could use to impersonate the marketplace or spoof the chain.
DROP_REQUEST = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"host", b"x-api-key", b"authorization", b"cookie", b"x-request-id",
    b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
    b"x-marketplace-proxy-secret", b"x-marketplace-consumer", b"x-marketplace-subscription", b"content-length",
    b"expect",  # the gateway reads the body itself; an interim 100 Continue never reaches the client
})
DROP_RESPONSE = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
    b"transfer-encoding", b"upgrade", b"x-request-id", b"ratelimit", b"ratelimit-policy", b"x-ratelimit-limit",
    b"x-ratelimit-remaining", b"x-ratelimit-reset", b"server", b"date",
})

ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SMALL_BODY = 256 * 1024
_encode = msgspec.json.Encoder().encode

LIMIT_NAMES = {2: "per-second", 3: "per-minute", 4: "quota"}
ADMIT_ARRAY = b"*%d\r\n" % (3 + 7 + 16)  # EVALSHA, sha, numkeys, 7 keys, 16 args


def problem_message(status: int, title: str, detail: str, slug: str, request_id: str,
                    **extra: Any) -> bytes:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
                            "request_id": request_id}
    body.update(extra)
    return _encode(body)


def upstream_client(*, pool_size: int, connect_timeout: float, timeout: float) -> UpstreamClient:
    """The one pooled upstream client of a process (see upstream.py). `timeout` bounds each whole
    call (connect, request, answer, body), `connect_timeout` opening a connection."""
    return UpstreamClient(pool_size=pool_size, connect_timeout=connect_timeout, timeout=timeout)


class Gateway:
    """One per process; built by the gateway's lifespan and kept on `app.state.gateway`."""

    def __init__(self, *, cache: GatewayCache, redis: FastRedis, redis_aux: Redis, http: UpstreamClient,
                 stats: GatewayStats | None = None) -> None:
        self.cache = cache
        self.redis = redis  # the hot path's pipelined client (EVALSHA only)
        self.redis_aux = redis_aux  # redis-py, for the rare refund/void pipeline
        self.http = http  # see upstream_client(); its timeouts bound every call
        self.stats = stats if stats is not None else GatewayStats()
        self.admit_sha: str | None = None
        self.k_stream = rkey("usage")
        self.k_used = rkey("key_used")
        self.k_no_token = rkey("jti-deny", "-")  # a key never set: KEYS[7] on the API-key path
        self.k_block = rkey("block")
        self.k_rate = rkey("rl")
        self.k_quota = rkey("quota")
        self.tasks: set[asyncio.Task[Any]] = set()

    # --- ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request_id = new_id("request")
        headers_out: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        mono = time.monotonic()
        try:
            api, status = await self.handle(scope, receive, send, request_id, headers_out, mono)
            self.stats.call(api.id, api.slug, status, time.monotonic() - mono)
        except GatewayProblem as problem:
            await self.send_problem(send, problem, request_id, headers_out)
            self.stats.problem(problem.slug, problem.status, problem.api, time.monotonic() - mono)
        except (SQLAlchemyError, OSError) as exc:  # a cache miss while PostgreSQL is unreachable
            log.warning("gateway_lookup_failed", request_id=request_id, error=type(exc).__name__)
            await self.send_problem(send, GatewayProblem(
                503, "Service unavailable", "The gateway cannot look up this API or key right now. Retry shortly; "
                "this call is not billed.", "lookup-unavailable", headers=[(b"retry-after", b"1")]),
                request_id, headers_out)
            self.stats.problem("lookup-unavailable", 503, None, time.monotonic() - mono)
        except Exception:
            log.exception("gateway_error", request_id=request_id)
            await self.send_problem(send, GatewayProblem(
                500, "Internal error", "The gateway failed on our side. Retry later; if it persists, contact support "
                "with this X-Request-Id.", "internal"), request_id, headers_out)
            self.stats.problem("internal", 500, None, time.monotonic() - mono)

    async def send_problem(self, send: Any, problem: GatewayProblem, request_id: str,
                           headers_out: list[tuple[bytes, bytes]]) -> None:
        body = problem_message(problem.status, problem.title, problem.detail, problem.slug, request_id,
                               **problem.extra)
        headers = [*headers_out, *problem.headers, (b"content-type", PROBLEM_JSON.encode()),
                   (b"content-length", str(len(body)).encode())]
        with contextlib.suppress(Exception):
            await send({"type": "http.response.start", "status": problem.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    # --- the call -----------------------------------------------------------------------------

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any, request_id: str,
                     headers_out: list[tuple[bytes, bytes]], mono: float) -> tuple[ApiEntry, int]:
        """Serve one call; returns the API and the status answered. A refusal raises GatewayProblem
        (carrying the API once it is known, for the statistics)."""
        now = time.time()
        method = scope["method"]
        if method not in ALLOWED_METHODS:
            raise GatewayProblem(405, "Method not allowed", f"The gateway does not proxy {method} requests.",
                                 "method-not-allowed", headers=[(b"allow", b", ".join(
                                     m.encode() for m in sorted(ALLOWED_METHODS)))])
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        if not raw_path.startswith(PREFIX):
            raise GatewayProblem(404, "Not found", "Call /gateway/{api_slug}/{path}.", "not-found")
        slug_b, _sep, rest_b = raw_path[len(PREFIX):].partition(b"/")
        try:
            slug = slug_b.decode("ascii")
            rest = "/" + rest_b.decode("ascii")
        except UnicodeDecodeError:
            raise GatewayProblem(400, "Bad request", "The path must be ASCII (percent-encode other characters).",
                                 "bad-path") from None
        if not slug or len(slug) > 64:
            raise GatewayProblem(404, "Not found", "Name the API: /gateway/{api_slug}/{path}. Find slugs with "
                                 "GET /v1/catalog/apis.", "not-found")
        lowered = rest.lower()
        if "/../" in lowered + "/" or "/./" in lowered + "/" or "%2e" in lowered or "%2f" in lowered \
                or "\\" in rest or "%00" in lowered or "%5c" in lowered:
            raise GatewayProblem(400, "Bad request", "The path may not contain dot segments, encoded slashes, "
                                 "backslashes or NUL bytes.", "bad-path")

        hit = self.cache.apis.entries.get(slug)  # the warm path, without a coroutine
        api = hit[0] if hit is not None and hit[1] > mono else await self.cache.api(slug, mono)
        if api is None or api.status == "draft":
            raise GatewayProblem(404, "Not found", f"No published API {slug!r}. Find APIs with GET /v1/catalog/apis.",
                                 "not-found")
        if api.status != "published":
            raise GatewayProblem(503, "API suspended", f"The API {slug!r} is suspended by the marketplace.",
                                 "api-suspended")
        try:
            return api, await self.proxy(scope, receive, send, request_id, headers_out, api, method, rest, now,
                                         mono)
        except GatewayProblem as problem:
            problem.api = api
            raise

    async def proxy(self, scope: dict[str, Any], receive: Any, send: Any, request_id: str,
                    headers_out: list[tuple[bytes, bytes]], api: ApiEntry, method: str, rest: str, now: float,
                    mono: float) -> int:
        endpoint, allowed = api.matcher.match(method, rest)
        if endpoint is None:
            if allowed:
                raise GatewayProblem(405, "Method not allowed", f"{method} is not offered on {rest}; allowed: "
                                     f"{', '.join(sorted(set(allowed)))}.", "method-not-allowed",
                                     headers=[(b"allow", ", ".join(sorted(set(allowed))).encode())])
            raise GatewayProblem(404, "Not found", f"{api.slug} has no endpoint {method} {rest}. See its endpoints "
                                 f"with GET /v1/catalog/apis/{api.slug}.", "no-such-endpoint")

        api_key: str | None = None
        authorization: str | None = None
        forward: list[tuple[bytes, bytes]] = []
        drop_extra: set[bytes] = set()
        host = content_length = None
        chunked = has_accept_encoding = has_user_agent = False
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                has_accept_encoding = True
            elif name == b"user-agent":
                has_user_agent = True
            elif name == b"x-api-key":
                api_key = value.decode("latin-1").strip()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"host":
                host = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                drop_extra.update(t.strip().lower() for t in value.split(b","))
        if drop_extra:
            forward = [(n, v) for n, v in scope["headers"] if n not in DROP_REQUEST and n not in drop_extra]
        else:
            forward = [(n, v) for n, v in scope["headers"] if n not in DROP_REQUEST]

        client = scope.get("client")
        request = ParsedRequest(method=method, path=rest, query=scope.get("query_string", b""), api=api,
                                api_key=api_key, authorization=authorization,
                                client_ip=client[0] if client else "")
        caller = await authenticate(request, self.cache, now, mono)
        if caller.api_id != api.id:
            raise GatewayProblem(403, "Forbidden", f"This API key belongs to a subscription of another API. "
                                 f"Subscribe to {api.slug} and create a key for that subscription.", "wrong-api")
        if caller.status == "canceled":
            raise GatewayProblem(403, "Subscription canceled", "This subscription is canceled. Subscribe again with "
                                 "POST /v1/subscriptions.", "subscription-canceled")
        if caller.status == "unpaid":
            raise GatewayProblem(402, "Payment required", "This subscription is unpaid. Pay the open invoice "
                                 "(GET /v1/invoices) or update your payment method with POST /v1/billing/setup.",
                                 "subscription-unpaid")
        if endpoint.scope and endpoint.scope not in caller.scopes and caller.token_jti is not None:
            raise GatewayProblem(403, "Insufficient scope", f"{method} {endpoint.path} needs the scope "
                                 f"{endpoint.scope!r}: this access token does not carry it, or your plan "
                                 f"{caller.plan_name!r} does not include it. Authorize the app with that scope.",
                                 "insufficient-scope", scope=endpoint.scope,
                                 headers=[(b"www-authenticate", f'Bearer error="insufficient_scope", '
                                                                f'scope="{endpoint.scope}"'.encode())])
        if endpoint.scope and endpoint.scope not in caller.scopes:
            better = [p.name for p in api.plans if p.id != caller.plan_id]
            raise GatewayProblem(403, "Scope not in plan", f"{method} {endpoint.path} needs the scope "
                                 f"{endpoint.scope!r}, which your plan {caller.plan_name!r} does not include."
                                 + (f" Plans of this API: {', '.join(better)}." if better else ""),
                                 "insufficient-scope", scope=endpoint.scope)
        if now >= caller.period_end:
            roll_period(caller, now)

        if api.origin is None:
            raise GatewayProblem(502, "Bad gateway", f"{api.slug}'s upstream URL is not usable. This call is not "
                                 "billed.", "upstream-unreachable")
        query = request.query
        target = rest.encode("ascii")  # checked ASCII above, still percent-encoded
        if query:
            target += b"?" + query

        # --- the upstream request's headers ---
        # No Accept-Encoding from the client means no compression (bodies pass through undecoded).
        if not has_accept_encoding:
            forward.append((b"accept-encoding", b"identity"))
        if not has_user_agent:
            forward.append((b"user-agent", b"marketplace-gateway"))
        forward.append((b"x-forwarded-for", request.client_ip.encode("latin-1")))
        forward.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
        if host:
            forward.append((b"x-forwarded-host", host))
        forward.append((b"x-request-id", request_id.encode()))
        forward.extend(api.proxy_headers)
        forward.extend(caller.proxy_headers)

        rl_headers = await self.admit(caller, api, endpoint.id, endpoint.method, endpoint.path,
                                      endpoint.weight, request_id, now)
        headers_out.extend(rl_headers)

        # --- proxy ---
        body: Any = None
        if chunked or (content_length is not None and content_length != b"0"):
            first = await receive()
            if first.get("more_body"):
                body = _stream_body(first.get("body", b""), receive)
            else:
                body = first.get("body", b"")

        billed_outcome = False
        status = 0
        try:
            async with self.http.request(method, api.origin, target, forward, body, content_length) as resp:
                status = resp.status
                if status >= 500:
                    self.void(caller, api, endpoint.id, endpoint.method, endpoint.path, endpoint.weight,
                              request_id, now)
                billed_outcome = True  # decided: billed (<500) or voided (5xx)
                out = [(k, v) for k, v in resp.headers if k.lower() not in DROP_RESPONSE]
                out.extend(headers_out)
                length = resp.content_length
                if resp.no_body:
                    await send({"type": "http.response.start", "status": status, "headers": out})
                    await send({"type": "http.response.body", "body": b""})
                elif length is not None and length <= SMALL_BODY:
                    data = await resp.read()
                    await send({"type": "http.response.start", "status": status, "headers": out})
                    await send({"type": "http.response.body", "body": data})
                else:
                    await send({"type": "http.response.start", "status": status, "headers": out})
                    async for chunk in resp.chunks():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
        except ValueError:  # a header value with a line break: never written to the upstream
            if billed_outcome:
                return status
            self.void(caller, api, endpoint.id, endpoint.method, endpoint.path, endpoint.weight, request_id, now)
            raise GatewayProblem(400, "Bad request", "A header value carries a line break. This call is not "
                                 "billed.", "bad-request") from None
        except TimeoutError:  # UpstreamTimeout
            if billed_outcome:
                return status  # the upstream answered, then stalled mid-body: the answer stands
            self.void(caller, api, endpoint.id, endpoint.method, endpoint.path, endpoint.weight, request_id, now)
            raise GatewayProblem(504, "Gateway timeout", f"{api.slug} did not answer in time. Retry later; this "
                                 "call is not billed.", "upstream-timeout") from None
        except (UpstreamError, OSError) as exc:
            if billed_outcome:
                return status
            self.void(caller, api, endpoint.id, endpoint.method, endpoint.path, endpoint.weight, request_id, now)
            raise GatewayProblem(502, "Bad gateway", f"{api.slug} could not be reached ({exc}). "
                                 "Retry later; this call is not billed.", "upstream-unreachable") from None
        except BaseException:
            if not billed_outcome:
                self.void(caller, api, endpoint.id, endpoint.method, endpoint.path, endpoint.weight,
                          request_id, now)
            raise
        return status

    # --- Redis --------------------------------------------------------------------------------

    async def admit(self, caller: Caller, api: Any, endpoint_id: str, method: str, path: str, weight: int,
                    request_id: str, now: float) -> list[tuple[bytes, bytes]]:
        sub = caller.subscription_id
        period = str(int(caller.period_start))
        jti = caller.token_jti
        keys = (f"{self.k_block}:{sub}", f"{self.k_rate}:{sub}:s", f"{self.k_rate}:{sub}:m",
                f"{self.k_quota}:{sub}:{period}", self.k_stream, self.k_used,
                deny_list_key(jti) if jti else self.k_no_token)
        ttl = int(caller.period_end - now) + 35 * 86400
        head = (weight, caller.per_second, caller.per_minute, caller.quota, 1 if caller.quota_hard else 0)
        tail = (sub, endpoint_id, caller.consumer_id, api.partner_id, api.id, caller.key_id or "", method, path,
                1 if jti else 0)

        def command(sha: str) -> bytes:
            # EVALSHA sha 7 KEYS… ARGV[1-5] | ARGV[6] ttl, ARGV[7] request id | ARGV[8-16]: all but the
            # middle are constant for a cached key caller, so they are encoded once (bearer calls
            # carry their token's jti in KEYS[7] and are encoded whole).
            cache_key = (endpoint_id, period, sha)
            parts = caller.admit_parts.get(cache_key) if jti is None else None
            if parts is None:
                parts = (bulk_strings(("EVALSHA", sha, 7, *keys, *head)), bulk_strings(tail))
                if jti is None:
                    caller.admit_parts[cache_key] = parts
            return b"".join((ADMIT_ARRAY, parts[0], bulk_strings((ttl, request_id)), parts[1]))

        try:
            if self.admit_sha is None:
                self.admit_sha = await self.redis.script_load(ADMIT_LUA)
            try:
                result = await self.redis.execute_encoded(command(self.admit_sha))
            except NoScriptError:  # Redis restarted (or flushed scripts): load once more
                self.admit_sha = await self.redis.script_load(ADMIT_LUA)
                result = await self.redis.execute_encoded(command(self.admit_sha))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("gateway_redis_unavailable", error=type(exc).__name__)
            raise GatewayProblem(503, "Service unavailable", "Rate limiting and metering are unavailable for a "
                                 "moment, so the gateway refuses calls rather than let them through unmetered. "
                                 "Retry shortly; this call is not billed.", "metering-unavailable",
                                 headers=[(b"retry-after", b"1")]) from None
        code, _now_ms, s_rem, s_reset, m_rem, m_reset, used, retry_ms, detail = result
        headers = self.limit_headers(caller, int(s_rem), int(s_reset), int(m_rem), int(m_reset), int(used), now)
        if code == 0:
            return headers
        if code == 5:
            raise GatewayProblem(401, "Unauthorized", "This access token was revoked. Refresh it or authorize the "
                                 "app again.", "invalid-token",
                                 headers=[(b"www-authenticate", b'Bearer error="invalid_token"')])
        if code == 1:
            message = detail.decode() if isinstance(detail, bytes) else str(detail)
            raise GatewayProblem(402, "Payment required", message or "This subscription is blocked.",
                                 "subscription-blocked", headers=headers)
        name = LIMIT_NAMES[int(code)]
        if code == 4:
            retry = max(1, math.ceil(caller.period_end - now))
            limit_value = caller.quota
            detail_text = (f"The monthly quota of {caller.quota} units of plan {caller.plan_name!r} is used up "
                           f"({int(used)} used; this call needs {weight}). It resets at the next period.")
        else:
            retry = max(1, math.ceil(int(retry_ms) / 1000))
            limit_value = caller.per_second if code == 2 else caller.per_minute
            detail_text = (f"The {name} rate limit of {limit_value} calls of plan {caller.plan_name!r} is reached. "
                           f"Retry in {retry} s.")
        field = {2: "per_second", 3: "per_minute", 4: "quota"}[int(code)]
        higher = [p for p in api.plans if p.id != caller.plan_id and _raises(getattr(p, field), limit_value)]
        if higher:
            detail_text += " To raise it, change plan (POST /v1/subscriptions/{id}/change-plan) to: " + ", ".join(
                f"{p.name} ({getattr(p, field) if getattr(p, field) is not None else 'unlimited'})"
                for p in higher) + "."
        raise GatewayProblem(429, "Too many requests", detail_text, "rate-limited" if code != 4 else "quota-exceeded",
                             headers=[*headers, (b"retry-after", str(retry).encode())], limit=name,
                             limit_value=limit_value,
                             plans=[{"id": p.id, "name": p.name, field: getattr(p, field)} for p in higher])

    def limit_headers(self, caller: Caller, s_rem: int, s_reset: int, m_rem: int, m_reset: int, used: int,
                      now: float) -> list[tuple[bytes, bytes]]:
        if not caller.policy_header:
            return []
        items: list[tuple[str, int, int, int]] = []  # (name, limit, remaining, reset seconds)
        if caller.per_second > 0:
            items.append(("per-second", caller.per_second, max(s_rem, 0), max(1, math.ceil(s_reset / 1000))))
        if caller.per_minute > 0:
            items.append(("per-minute", caller.per_minute, max(m_rem, 0), max(1, math.ceil(m_reset / 1000))))
        if caller.quota >= 0:
            items.append(("quota", caller.quota, max(caller.quota - used, 0),
                          max(1, math.ceil(caller.period_end - now))))
        tight = min(items, key=lambda i: (i[2], -i[3]))
        return [
            (b"ratelimit-policy", caller.policy_header.encode()),
            (b"ratelimit", ", ".join(f'"{n}";r={r};t={t}' for n, _, r, t in items).encode()),
            (b"x-ratelimit-limit", str(tight[1]).encode()),
            (b"x-ratelimit-remaining", str(tight[2]).encode()),
            (b"x-ratelimit-reset", str(tight[3]).encode()),
        ]

    def void(self, caller: Caller, api: Any, endpoint_id: str, method: str, path: str, weight: int,
             request_id: str, now: float) -> None:
        """The call failed after admission: refund its quota units and void its usage entry."""
        task = asyncio.get_running_loop().create_task(self._void(caller, api, endpoint_id, method, path, weight,
                                                                 request_id, now))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _void(self, caller: Caller, api: Any, endpoint_id: str, method: str, path: str, weight: int,
                    request_id: str, now: float) -> None:
        quota_key = f"{self.k_quota}:{caller.subscription_id}:{int(caller.period_start)}"
        fields = {"t": "v", "r": request_id, "s": caller.subscription_id, "e": endpoint_id,
                  "c": caller.consumer_id, "p": api.partner_id, "a": api.id, "k": caller.key_id or "",
                  "m": method, "pt": path, "u": str(weight), "ts": str(int(now * 1000))}
        for attempt in range(3):
            try:
                async with self.redis_aux.pipeline(transaction=True) as pipe:
                    pipe.decrby(quota_key, weight)
                    pipe.xadd(self.k_stream, fields)  # type: ignore[arg-type]
                    await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                log.warning("gateway_void_failed", request_id=request_id, attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error("gateway_void_lost", request_id=request_id, subscription_id=caller.subscription_id)


def _raises(offer: int | None, current: int) -> bool:
    if offer is None:
        return True  # no such limit on that plan: unlimited
    return offer > current


async def _stream_body(first: bytes, receive: Any) -> Any:
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return
