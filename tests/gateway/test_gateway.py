"""The gateway, through HTTP, against a real upstream on loopback and real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest
from redis.asyncio import Redis

from marketplace.core.redis import key as rkey
from tests.gateway.factories import (
    Upstream,
    consumer_with_key,
    flush,
    make_api,
    new_key,
    redis_client,
    subscribe,
    usage,
)
from tests.helpers import Api, assert_problem


def gw(world, path: str) -> str:  # type: ignore[no-untyped-def]
    return f"/gateway/{world.slug}{path}"


async def test_a_call_reaches_the_upstream_with_proxy_headers_and_without_consumer_credentials(
        app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    response = await api.client.get(gw(world, "/forecast/paris?units=metric"), headers={
        "X-API-Key": key["key"], "Authorization": "Bearer secret-token", "Cookie": "session=abc",
        "X-Request-Id": "req_spoofed", "X-Forwarded-For": "6.6.6.6", "X-Marketplace-Consumer": "usr_evil",
        "X-Marketplace-Proxy-Secret": "guess", "Connection": "keep-alive, X-Hop", "X-Hop": "1",
        "X-Custom": "kept"})
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/v1/forecast/paris?units=metric"
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_") and request_id != "req_spoofed"
    received = {k.lower(): v for k, v in upstream.last()["headers"].items()}
    assert received["x-marketplace-proxy-secret"] == world.proxy_secret
    assert received["x-marketplace-consumer"] == user.id
    assert received["x-marketplace-subscription"] == sub["id"]
    assert received["x-request-id"] == request_id
    assert received["x-forwarded-proto"] == "http" and received["x-forwarded-host"] == "testserver.local"
    assert "6.6.6.6" not in received["x-forwarded-for"]
    assert received["x-custom"] == "kept"
    for secret in ("x-api-key", "authorization", "cookie", "x-hop"):
        assert secret not in received, secret
    assert response.headers["ratelimit-policy"] and response.headers["ratelimit"]
    assert response.headers["x-ratelimit-limit"] and response.headers["x-ratelimit-remaining"]


async def test_request_and_response_bodies_stream_through(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    payload = b"a" * (1024 * 1024 + 7)
    up = await api.client.post(gw(world, "/upload"), content=payload, headers={"X-API-Key": key["key"]})
    assert up.status_code == 200 and up.json()["body_length"] == len(payload)
    big = await api.client.get(gw(world, "/big"), headers={"X-API-Key": key["key"]})
    assert big.status_code == 200 and len(big.content) == 64 * 16384
    files = await api.client.get(gw(world, "/files/a/b/c.txt"), headers={"X-API-Key": key["key"]})
    assert files.status_code == 200 and files.json()["path"] == "/v1/files/a/b/c.txt"


async def test_n_concurrent_calls_bill_exactly_n_times_weight(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    n = 40
    heavy = [api.client.get(gw(world, "/heavy"), headers={"X-API-Key": key["key"]}) for _ in range(n)]
    light = [api.client.get(gw(world, f"/forecast/c{i}"), headers={"X-API-Key": key["key"]}) for i in range(n)]
    responses = await asyncio.gather(*heavy, *light)
    assert [r.status_code for r in responses] == [200] * (2 * n)
    assert len({r.headers["x-request-id"] for r in responses}) == 2 * n
    await flush(app)
    await flush(app)  # flushing again changes nothing
    body = await usage(api, user, sub["id"])
    assert body["units"] == n * 5 + n
    by = {(e["method"], e["path"]): (e["calls"], e["units"]) for e in body["by_endpoint"]}
    assert by == {("GET", "/heavy"): (n, n * 5), ("GET", "/forecast/{city}"): (n, n)}


async def test_upstream_5xx_and_refused_calls_are_not_billed(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    failed = await api.client.get(gw(world, "/fail"), headers={"X-API-Key": key["key"]})
    assert failed.status_code == 503 and failed.json() == {"error": "boom"}  # passed through as is
    assert_problem(await api.client.get(gw(world, "/nope"), headers={"X-API-Key": key["key"]}), 404)
    assert_problem(await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": "mk_wrong-key"}), 401)
    ok = await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})
    assert ok.status_code == 200
    await flush(app)
    body = await usage(api, user, sub["id"])
    assert body["units"] == 1 and [e["path"] for e in body["by_endpoint"]] == ["/forecast/{city}"]


async def test_upstream_down_gives_502_and_a_timeout_504_and_neither_is_billed(
        app, api: Api, upstream: Upstream) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    down = await make_api(app, api, f"http://127.0.0.1:{dead_port}")
    user, sub, key = await consumer_with_key(app, api, down)
    assert_problem(await api.client.get(gw(down, "/forecast/x"), headers={"X-API-Key": key["key"]}), 502,
                   contains="not billed")

    world = await make_api(app, api, upstream.url)
    user2, sub2, key2 = await consumer_with_key(app, api, world)
    from marketplace.gateway.proxy import upstream_client

    gateway = app.state.gateway
    saved = gateway.http
    gateway.http = upstream_client(pool_size=8, connect_timeout=0.5, timeout=0.5)
    try:
        slow = await api.client.get(gw(world, "/slow"), headers={"X-API-Key": key2["key"]})
    finally:
        await gateway.http.close()
        gateway.http = saved
    assert_problem(slow, 504, contains="not billed")
    assert slow.headers["x-request-id"].startswith("req_")
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 0
    assert (await usage(api, user2, sub2["id"]))["units"] == 0


async def test_the_hard_quota_stops_at_the_exact_unit(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[
        {"name": "Tiny", "quota_limit": 12, "quota_hard": True},
        {"name": "Big", "quota_limit": 1000, "quota_hard": True}])
    user, sub, key = await consumer_with_key(app, api, world, "Tiny")
    h = {"X-API-Key": key["key"]}
    assert (await api.client.get(gw(world, "/heavy"), headers=h)).status_code == 200  # 5
    assert (await api.client.get(gw(world, "/heavy"), headers=h)).status_code == 200  # 10
    refused = await api.client.get(gw(world, "/heavy"), headers=h)  # would be 15
    body = assert_problem(refused, 429, contains="quota")
    assert body["limit"] == "quota" and [p["name"] for p in body["plans"]] == ["Big"]
    assert int(refused.headers["retry-after"]) > 0
    assert (await api.client.get(gw(world, "/forecast/a"), headers=h)).status_code == 200  # 11
    last = await api.client.get(gw(world, "/forecast/b"), headers=h)  # 12: exactly the quota
    assert last.status_code == 200 and last.headers["x-ratelimit-remaining"] == "0"
    assert_problem(await api.client.get(gw(world, "/forecast/c"), headers=h), 429)
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 12


async def test_a_soft_quota_lets_calls_through_and_counts_them(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[{"name": "Soft", "quota_limit": 3, "quota_hard": False}])
    user, sub, key = await consumer_with_key(app, api, world)
    for i in range(5):
        response = await api.client.get(gw(world, f"/forecast/{i}"), headers={"X-API-Key": key["key"]})
        assert response.status_code == 200
    await flush(app)
    body = await usage(api, user, sub["id"])
    assert body["units"] == 5 and body["quota"] == {"limit": 3, "hard": False, "used": 5, "remaining": 0}


async def test_the_rate_limit_answers_429_with_headers_and_retry_after(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[
        {"name": "Basic", "rate_per_second": 3, "rate_per_minute": 100},
        {"name": "Pro", "rate_per_second": 50, "rate_per_minute": 3000}])
    user, sub, key = await consumer_with_key(app, api, world, "Basic")
    h = {"X-API-Key": key["key"]}
    statuses = []
    for _ in range(4):
        statuses.append(await api.client.get(gw(world, "/forecast/x"), headers=h))
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    first = statuses[0]
    assert first.headers["ratelimit-policy"] == '"per-second";q=3;w=1, "per-minute";q=100;w=60'
    assert first.headers["x-ratelimit-limit"] == "3" and first.headers["x-ratelimit-remaining"] == "2"
    assert '"per-second";r=2;t=1' in first.headers["ratelimit"]
    refused = statuses[3]
    body = assert_problem(refused, 429, contains="per-second")
    assert body["limit"] == "per-second" and body["plans"][0]["name"] == "Pro"
    assert refused.headers["retry-after"] == "1" and refused.headers["x-ratelimit-remaining"] == "0"
    await asyncio.sleep(1.1)
    assert (await api.client.get(gw(world, "/forecast/x"), headers=h)).status_code == 200
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 4  # the refused call is not billed


async def test_a_revoked_key_is_refused_within_a_second(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, _sub, key = await consumer_with_key(app, api, world)
    h = {"X-API-Key": key["key"]}
    assert (await api.client.get(gw(world, "/forecast/x"), headers=h)).status_code == 200  # now cached
    assert (await api.client.delete(f"/v1/api-keys/{key['id']}", headers=user.headers)).status_code == 200
    deadline = time.monotonic() + 1.0
    while True:
        response = await api.client.get(gw(world, "/forecast/x"), headers=h)
        if response.status_code == 401:
            break
        assert time.monotonic() < deadline, "the revoked key still works after a second"
        await asyncio.sleep(0.02)
    assert_problem(response, 401, contains="revoked")


async def test_a_rotated_key_keeps_working_during_the_overlap_window(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, _sub, key = await consumer_with_key(app, api, world)
    old = {"X-API-Key": key["key"]}
    assert (await api.client.get(gw(world, "/forecast/x"), headers=old)).status_code == 200
    rotated = await api.client.post(f"/v1/api-keys/{key['id']}/rotate", json={"overlap_seconds": 1},
                                    headers=user.headers)
    assert rotated.status_code == 201 and rotated.json()["replaces"] == key["id"]
    new = {"X-API-Key": rotated.json()["key"]}
    assert rotated.json()["key"] != key["key"] and rotated.json()["old_key_expires_at"]
    assert (await api.client.get(gw(world, "/forecast/x"), headers=old)).status_code == 200
    assert (await api.client.get(gw(world, "/forecast/x"), headers=new)).status_code == 200
    await asyncio.sleep(1.1)
    assert_problem(await api.client.get(gw(world, "/forecast/x"), headers=old), 401, contains="rotated")
    assert (await api.client.get(gw(world, "/forecast/x"), headers=new)).status_code == 200
    default = await api.client.post(f"/v1/api-keys/{rotated.json()['id']}/rotate", headers=user.headers)
    assert default.status_code == 201
    listed = {k["id"]: k for k in (await api.client.get("/v1/api-keys", headers=user.headers)).json()}
    expires = listed[rotated.json()["id"]]["expires_at"]
    assert expires and listed[default.json()["id"]]["expires_at"] is None
    from datetime import datetime, timedelta

    from marketplace.core.db import utcnow
    assert datetime.fromisoformat(expires) - utcnow() > timedelta(hours=23)


async def test_a_key_only_reaches_its_own_subscription(app, api: Api, upstream: Upstream) -> None:
    first = await make_api(app, api, upstream.url)
    second = await make_api(app, api, upstream.url)
    owner, sub, key = await consumer_with_key(app, api, first)
    _stranger, _other_sub, other_key = await consumer_with_key(app, api, second)
    # The stranger's key (for another API) cannot be used to reach the owner's subscription's API.
    wrong = await api.client.get(gw(first, "/forecast/x"), headers={"X-API-Key": other_key["key"]})
    assert_problem(wrong, 403, contains="another API")
    ok = await api.client.get(gw(first, "/forecast/x"), headers={"X-API-Key": key["key"]})
    assert ok.status_code == 200
    received = {k.lower(): v for k, v in upstream.last()["headers"].items()}
    assert received["x-marketplace-subscription"] == sub["id"] and received["x-marketplace-consumer"] == owner.id
    # A canceled subscription's keys stop working at once.
    await api.client.delete(f"/v1/subscriptions/{sub['id']}?now=true", headers=owner.headers)
    deadline = time.monotonic() + 1.0
    while (r := await api.client.get(gw(first, "/forecast/x"), headers={"X-API-Key": key["key"]})).status_code == 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert_problem(r, 403, contains="canceled")


async def test_an_endpoint_needs_its_scope_in_the_plan(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url, plans=[
        {"name": "Read", "scopes": ["weather:read"]}, {"name": "Write", "scopes": ["weather:read", "weather:write"]}])
    _, _, key = await consumer_with_key(app, api, world, "Read")
    assert (await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})).status_code == 200
    refused = await api.client.post(gw(world, "/forecast/x"), json={}, headers={"X-API-Key": key["key"]})
    assert_problem(refused, 403, contains="weather:write")


async def test_bad_paths_methods_and_headers_are_problems_never_500(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    h = {"X-API-Key": key["key"]}
    cases = [
        ("GET", "/gateway/no-such-api/x", h, 404),
        ("GET", "/gateway/", h, 404),
        ("GET", gw(world, "/unknown"), h, 404),
        ("PUT", gw(world, "/forecast/x"), h, 405),
        ("TRACE", gw(world, "/forecast/x"), h, 405),
        ("GET", gw(world, "/files/%2e%2e/secret"), h, 400),
        ("GET", gw(world, "/files/a%2fb"), h, 400),
        ("GET", gw(world, "/forecast/x"), {}, 401),
        ("GET", gw(world, "/forecast/x"), {"X-API-Key": ""}, 401),
        ("GET", gw(world, "/forecast/x"), {"X-API-Key": "x" * 5000}, 401),
        ("GET", gw(world, "/forecast/x"), {"Authorization": "Bearer some.jwt.token"}, 401),
        ("GET", gw(world, "/forecast/x"), {"Authorization": "Basic Zm9vOmJhcg=="}, 401),
    ]
    for method, path, headers, status in cases:
        response = await api.client.request(method, path, headers=headers)
        assert_problem(response, status)
        assert response.headers["x-request-id"].startswith("req_"), path
    bearer = await api.client.get(gw(world, "/forecast/x"), headers={"Authorization": "Bearer t"})
    assert_problem(bearer, 401, contains="Invalid access token")  # not a JWT: refused before any lookup
    assert (await api.client.put(gw(world, "/forecast/x"), headers=h)).headers["allow"] == "GET, POST"
    draft = await make_api(app, api, upstream.url, status="draft")
    assert_problem(await api.client.get(gw(draft, "/forecast/x"), headers=h), 404)


async def test_a_blocked_subscription_answers_402_with_the_reason(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, sub, key = await consumer_with_key(app, api, world)
    redis = redis_client()
    try:
        await redis.set(rkey("block", sub["id"]), "Your monthly budget cap of $10.00 is reached. Raise it in /dashboard.")
        blocked = await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})
        assert_problem(blocked, 402, contains="budget cap")
        await redis.delete(rkey("block", sub["id"]))
    finally:
        await redis.aclose()
    assert (await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})).status_code == 200
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_unreachable_fails_closed_with_503_and_recovers(app, api: Api, upstream: Upstream,
                                                                    tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Documented behaviour: without Redis the gateway cannot limit or meter, so it refuses every
    call with 503 problem+json and Retry-After; it recovers (and reloads its script) by itself."""
    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    gateway = app.state.gateway
    saved_redis, saved_sha = gateway.redis, gateway.admit_sha
    try:
        for _ in range(100):
            try:
                probe = Redis(port=port)
                await probe.ping()
                await probe.aclose()
                break
            except Exception:
                await asyncio.sleep(0.05)
        from marketplace.gateway.routes import gateway_redis

        gateway.redis, gateway.admit_sha = gateway_redis(f"redis://127.0.0.1:{port}/0", 0.5), None
        h = {"X-API-Key": key["key"]}
        assert (await api.client.get(gw(world, "/forecast/x"), headers=h)).status_code == 200
        server.terminate()
        server.wait(5)
        down = await api.client.get(gw(world, "/forecast/x"), headers=h)
        assert_problem(down, 503, contains="not billed")
        assert down.headers["retry-after"] == "1"
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        for _ in range(100):
            response = await api.client.get(gw(world, "/forecast/x"), headers=h)
            if response.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert response.status_code == 200  # a fresh Redis has no script: reloaded on NOSCRIPT
    finally:
        gateway.redis, gateway.admit_sha = saved_redis, saved_sha
        server.terminate()
        server.wait(5)


async def test_last_used_at_is_recorded_in_batches_off_the_hot_path(app, api: Api, upstream: Upstream) -> None:
    world = await make_api(app, api, upstream.url)
    user, _sub, key = await consumer_with_key(app, api, world)
    assert (await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})).status_code == 200
    await flush(app)
    listed = (await api.client.get("/v1/api-keys", headers=user.headers)).json()
    assert listed[0]["last_used_at"] is not None


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "DELETE"])
async def test_methods_without_an_endpoint_are_405(app, api: Api, upstream: Upstream, method: str) -> None:
    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    response = await api.client.request(method, gw(world, "/upload"), headers={"X-API-Key": key["key"]})
    assert response.status_code == 405


_ = (new_key, subscribe)


async def test_no_postgresql_query_on_the_hot_path_once_caches_are_warm(app, api: Api, upstream: Upstream) -> None:
    from sqlalchemy import event

    world = await make_api(app, api, upstream.url)
    _, _, key = await consumer_with_key(app, api, world)
    h = {"X-API-Key": key["key"]}
    assert (await api.client.get(gw(world, "/forecast/warm"), headers=h)).status_code == 200
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for i in range(5):
            assert (await api.client.get(gw(world, f"/forecast/{i}"), headers=h)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # The statistics flusher writes every 10 s on its own task, never on a call's path.
    assert [s for s in statements if "gateway_stats" not in s] == []


async def test_revocation_reaches_another_gateway_process_within_a_second(
        app, api: Api, upstream: Upstream) -> None:
    """A second platform process (granian, as in production) drops its cached key on the pub/sub
    message that the revoking process publishes after its commit."""
    import os
    import sys

    import httpx

    world = await make_api(app, api, upstream.url)
    user, _, key = await consumer_with_key(app, api, world)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1", "--host",
         "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning", "marketplace.app:create_app"],
        env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as other:
            for _ in range(200):
                try:
                    if (await other.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            url = gw(world, "/forecast/x")
            assert (await other.get(url, headers={"X-API-Key": key["key"]})).status_code == 200  # cached there
            await asyncio.sleep(0.2)  # its invalidation listener is subscribed by now
            assert (await api.client.delete(f"/v1/api-keys/{key['id']}", headers=user.headers)).status_code == 200
            deadline = time.monotonic() + 1.0
            while (response := await other.get(url, headers={"X-API-Key": key["key"]})).status_code == 200:
                assert time.monotonic() < deadline, "the other process still accepts the revoked key"
                await asyncio.sleep(0.02)
            assert response.status_code == 401
    finally:
        server.terminate()
        server.wait(10)


async def test_an_upstream_whose_dns_now_points_at_a_private_address_is_refused_at_connect(
        app, api: Api, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the upstream passed the SSRF rule when it was saved, then its name resolves to
    our private network. New connections check every resolved address again, so the call is a 502
    (not billed) and nothing is sent there."""
    world = await make_api(app, api, upstream.url.replace("127.0.0.1", "localhost"))
    user, sub, key = await consumer_with_key(app, api, world)
    from marketplace.settings import get_settings

    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    before = len(upstream.received)
    refused = await api.client.get(gw(world, "/forecast/x"), headers={"X-API-Key": key["key"]})
    assert_problem(refused, 502)
    assert len(upstream.received) == before
    await flush(app)
    assert (await usage(api, user, sub["id"]))["units"] == 0
