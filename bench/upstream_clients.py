"""Upstream client benchmark: CPU per proxied request for the HTTP clients the gateway could use.

Run (needs `nginx`: apt-get install -y nginx-light):

    python bench/upstream_clients.py [--requests 20000] [--concurrency 64]

Starts an nginx (one worker) answering a small JSON body on loopback, then, in this one process on
uvloop, sends the same GET with the gateway's nine forwarded headers through each client with
`concurrency` tasks, and prints requests/s and CPU per request: the whole process (every thread)
and the main thread (the one that holds the gateway's event loop). Clients: aiohttp
(`ClientSession.request`, configured as the gateway had it), the gateway's own
`marketplace.gateway.upstream.UpstreamClient`, and pyreqwest if it is installed (not a project
dependency: `pip install pyreqwest` to include it). Numbers are only comparable within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway import free_port, start_nginx, wait_port  # noqa: E402

HEADERS = [("accept-encoding", "identity"), ("user-agent", "bench"), ("x-forwarded-for", "127.0.0.1"),
           ("x-forwarded-proto", "http"), ("x-request-id", "req_01JBENCH0000000000000000"),
           ("x-marketplace-proxy-secret", "psec_bench"), ("x-marketplace-consumer", "usr_bench"),
           ("x-marketplace-subscription", "sub_bench"), ("accept", "*/*")]


async def aiohttp_client(url: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[Any]]]:
    import aiohttp
    import yarl

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
                                    auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    timeout = aiohttp.ClientTimeout(total=30, sock_connect=3)
    target = yarl.URL(url, encoded=True)

    async def one() -> None:
        async with session.request("GET", target, headers=HEADERS, timeout=timeout, allow_redirects=False) as r:
            [(k, v) for k, v in r.raw_headers]
            await r.read()

    return one, session.close


async def gateway_client(url: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[Any]]]:
    from marketplace.gateway.upstream import Origin, UpstreamClient

    client = UpstreamClient(pool_size=512, connect_timeout=3, timeout=30)
    base, _, path = url.partition("/v1")
    origin = Origin(base + "/v1")
    target = path.encode()
    headers = [(k.encode(), v.encode()) for k, v in HEADERS]

    async def one() -> None:
        async with client.request("GET", origin, target, headers) as r:
            [(k, v) for k, v in r.headers]
            await r.read()

    return one, client.close


async def pyreqwest_client(url: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[Any]]]:
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    client = (ClientBuilder().max_connections(512).timeout(timedelta(seconds=30))
              .connect_timeout(timedelta(seconds=3)).follow_redirects(False).gzip(False).brotli(False)
              .zstd(False).deflate(False).no_proxy().http1_only().build())

    async def one() -> None:
        async with client.request("GET", url).headers(HEADERS).build_streamed() as r:
            [(k.encode(), v.encode()) for k, v in r.headers.items()]
            (await r.body_reader.bytes()).to_bytes()

    return one, client.close


async def measure(name: str, factory: Any, url: str, requests: int, concurrency: int) -> None:
    try:
        one, close = await factory(url)
    except ImportError:
        print(f"  {name:<22} not installed")
        return
    for _ in range(200):
        await one()
    per_task = requests // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            await one()

    t0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    t1, cpu1, main1 = time.perf_counter(), time.process_time(), time.thread_time()
    n = per_task * concurrency
    print(f"  {name:<22}{n / (t1 - t0):>10.0f}{(cpu1 - cpu0) / n * 1e6:>14.1f}{(main1 - main0) / n * 1e6:>14.1f}")
    await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("nginx"):
        sys.exit("nginx is missing: apt-get install -y nginx-light")
    port = free_port()
    body = '{"ok":true,"forecast":"sunny","temperature_c":21}'
    proc, prefix = start_nginx(f"""server {{ listen 127.0.0.1:{port}; keepalive_timeout 60s;
        location / {{ default_type application/json; return 200 '{body}'; }} }}""")
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/v1/hello/world"
        print(f"{args.requests} GETs, {args.concurrency} concurrent, one process on uvloop; nginx upstream, 1 worker")
        print(f"  {'client':<22}{'req/s':>10}{'CPU us/req':>14}{'main us/req':>14}")
        for _ in range(args.rounds):
            for name, factory in (("aiohttp", aiohttp_client), ("gateway UpstreamClient", gateway_client),
                                  ("pyreqwest", pyreqwest_client)):
                uvloop.run(measure(name, factory, url, args.requests, args.concurrency))
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
