"""Gateway benchmark: direct upstream vs a bare nginx reverse proxy vs the marketplace gateway.

Run (needs `nginx` and `wrk`: apt-get install -y nginx-light wrk; DATABASE_URL/REDIS_URL like the
tests use):

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        python bench/gateway.py [--duration 10] [--connections 64]

It starts, on loopback: an nginx upstream answering a small JSON body (one worker), a bare nginx
reverse proxy in front of it (one worker, keep-alive pool), and the platform under granian (one
worker, uvloop) in its own fresh database and Redis namespace, with a published API, a plan with
rate limits and a soft quota (so the full Lua path runs), a subscription and an API key. Then:

1. peak: `wrk` with a fixed connection count against each of the three;
2. half peak: `wrk` paced by a Lua `delay()` to about half the gateway's peak rate, against the
   direct upstream and the gateway, to get the latency the gateway adds at p50 under that load.

Everything runs in one go and prints the ratios; the numbers are only comparable within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def nginx_conf(prefix: Path, body: str) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    {body}
}}
""")
    return conf


def start_nginx(body: str) -> tuple[subprocess.Popen[bytes], Path]:
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    conf = nginx_conf(prefix, body)
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, prefix


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "p50": re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "p99": re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "errors": re.compile(r"Socket errors:(.*)"),
}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, *, duration: int, connections: int, headers: dict[str, str] | None = None,
        delay_ms: float | None = None) -> dict[str, float]:
    args = ["wrk", "-t", "2" if connections > 1 else "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    for k, v in (headers or {}).items():
        args += ["-H", f"{k}: {v}"]
    script = None
    if delay_ms is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f"function delay()\n  return {delay_ms:.3f}\nend\n")
        script.close()
        args += ["-s", script.name]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)
    result: dict[str, float] = {"rps": float(WRK_RE["rps"].search(out).group(1))}  # type: ignore[union-attr]
    for name in ("p50", "p99"):
        m = WRK_RE[name].search(out)
        result[name] = _ms(m.group(1), m.group(2)) if m else float("nan")
    m = WRK_RE["non2xx"].search(out)
    result["non2xx"] = float(m.group(1)) if m else 0.0
    if WRK_RE["errors"].search(out):
        result["socket_errors"] = 1.0
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of a process and its direct children (nginx's and
    granian's workers), from /proc; 0 where /proc is missing."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measured(pid: int, url: str, **kwargs: Any) -> dict[str, float]:
    """wrk, plus the CPU the target process (with its workers) used per request and in cores."""
    before, started = cpu_seconds(pid), time.monotonic()
    result = wrk(url, **kwargs)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    result["cpu_us_per_req"] = used / max(result["rps"] * kwargs["duration"], 1) * 1e6
    result["cores"] = used / elapsed
    return result


async def prepare_database(base_url: str, name: str) -> str:
    import asyncpg

    parts = urlsplit(base_url.replace("postgresql+asyncpg://", "postgresql://"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}", scheme="postgresql+asyncpg"))


async def drop_database(base_url: str, name: str) -> None:
    import asyncpg

    parts = urlsplit(base_url.replace("postgresql+asyncpg://", "postgresql://"))
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(base: str, upstream_url: str) -> tuple[str, str, str]:
    """Sign up a partner and a consumer over HTTP, insert the API rows, subscribe, create a key, and
    an OAuth app whose client-credentials access token carries the endpoint's scope."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from marketplace.core.db import make_sessionmaker
    from marketplace.core.ids import new_id
    from marketplace.core.security import encrypt
    from marketplace.settings import get_settings
    from partners.publishing.models import Api, Endpoint, Plan, PlanVersion, Scope

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async def signup() -> dict[str, str]:
            r = await client.post("/v1/signup", json={"email": f"bench-{secrets.token_hex(4)}@example.com",
                                                      "password": "correct horse battery", "name": "Bench"})
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['token']}"}

        partner_h, consumer_h = await signup(), await signup()
        partner = (await client.post("/v1/partners", json={"name": "Bench"}, headers=partner_h)).json()
        engine = create_async_engine(get_settings().database_url or "")
        api_id, plan_id, slug = new_id("api"), new_id("plan"), f"bench-{secrets.token_hex(3)}"
        async with make_sessionmaker(engine).begin() as session:
            session.add(Api(id=api_id, partner_id=partner["id"], slug=slug, name="Bench", description="",
                            upstream_url=upstream_url, tags=[], status="published",
                            proxy_secret_encrypted=encrypt("psec_bench"), revision=1))
            await session.flush()
            session.add(Scope(id=new_id("scope"), api_id=api_id, name="bench:read", description="Bench"))
            session.add(Endpoint(id=new_id("endpoint"), api_id=api_id, method="GET", path="/hello/{name}",
                                 scope="bench:read", weight=1, description=""))
            session.add(Plan(id=plan_id, api_id=api_id, status="active", current_version=1))
            await session.flush()
            session.add(PlanVersion(id=new_id("plan") + "v", plan_id=plan_id, version=1, name="Bench",
                                    currency="usd", monthly_fee=0, included_units=0, unit_pricing=None,
                                    quota_limit=10**12, quota_hard=False, rate_per_second=1_000_000,
                                    rate_per_minute=60_000_000, scopes=["bench:read"]))
        await engine.dispose()
        sub = (await client.post("/v1/subscriptions", json={"plan_id": plan_id}, headers=consumer_h)).json()
        key = (await client.post("/v1/api-keys", json={"subscription_id": sub["id"], "name": "bench"},
                                 headers=consumer_h)).json()
        app = (await client.post("/v1/apps", json={"name": "bench", "grant_types": ["client_credentials"]},
                                 headers=consumer_h)).json()
        token = (await client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "bench:read"},
                                   auth=(app["client_id"], app["client_secret"]))).json()
        return slug, key["key"], token["access_token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for the peak runs")
    parser.add_argument("--serve", action="store_true", help="set everything up, print the URLs and wait (profiling)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y nginx-light wrk")
    base_db = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not base_db or not redis_url:
        sys.exit("Set DATABASE_URL and REDIS_URL (the bench creates and drops its own database).")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up below on kill -TERM
    run = secrets.token_hex(4)
    db_name = f"mkt_bench_{run}"
    procs: list[subprocess.Popen[bytes]] = []
    temp_dirs: list[Path] = []
    up_port, proxy_port, gw_port = free_port(), free_port(), free_port()
    db_url = asyncio.run(prepare_database(base_db, db_name))
    env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": f"mkt-bench-{run}",
           "MARKETPLACE_ALLOW_PRIVATE_NETWORKS": "1", "MARKETPLACE_INPROCESS_WORKER": "0",
           "MARKETPLACE_LOG_LEVEL": "WARNING", "MARKETPLACE_LOG_JSON": "1", "PYTHONPATH": str(ROOT),
           "OAUTH_ACCESS_TOKEN_TTL": "3600"}
    os.environ.update(env)
    try:
        from alembic import command

        from marketplace.migrations_config import alembic_config

        command.upgrade(alembic_config(db_url), "head")

        body = '{"ok":true,"forecast":"sunny","temperature_c":21}'
        p, d = start_nginx(f"""server {{ listen 127.0.0.1:{up_port}; keepalive_timeout 60s;
            location / {{ default_type application/json; return 200 '{body}'; }} }}""")
        procs.append(p)
        temp_dirs.append(d)
        p, d = start_nginx(f"""upstream up {{ server 127.0.0.1:{up_port}; keepalive 256; }}
            server {{ listen 127.0.0.1:{proxy_port};
              location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
                           proxy_set_header X-Forwarded-For $remote_addr; }} }}""")
        procs.append(p)
        temp_dirs.append(d)
        granian = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--workers", "1",
                   "--loop", "uvloop", "--host", "127.0.0.1", "--port", str(gw_port), "--no-access-log",
                   "--log-level", "warning", "--backlog", "4096", "marketplace.app:create_app"]
        procs.append(subprocess.Popen(granian, env=env, cwd=ROOT))
        for port in (up_port, proxy_port, gw_port):
            wait_port(port)

        slug, api_key, access_token = asyncio.run(seed(f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{up_port}/v1"))
        direct = f"http://127.0.0.1:{up_port}/v1/hello/world"
        proxied = f"http://127.0.0.1:{proxy_port}/v1/hello/world"
        gateway = f"http://127.0.0.1:{gw_port}/gateway/{slug}/hello/world"
        key_h = {"X-API-Key": api_key}
        bearer_h = {"Authorization": f"Bearer {access_token}"}
        for headers in (key_h, bearer_h):
            check = httpx.get(gateway, headers=headers)
            assert check.status_code == 200 and check.json()["ok"], check.text

        d, c = args.duration, args.connections
        if args.serve:
            info = (f"direct={direct}\nproxy={proxied}\ngateway={gateway}\nkey={api_key}\n"
                    f"gateway_pid={procs[-1].pid}\nDATABASE_URL={db_url}\nREDIS_NAMESPACE=mkt-bench-{run}\n")
            Path(tempfile.gettempdir(), "bench_gateway_serve.env").write_text(info)
            print(info, flush=True)
            while True:
                time.sleep(3600)
        wrk(gateway, duration=2, connections=c, headers=key_h)  # warm-up: caches, pools, JIT-free but still
        wrk(gateway, duration=1, connections=c, headers=bearer_h)
        up_pid, proxy_pid, gw_pid = (p.pid for p in procs)
        results = {
            "direct upstream": measured(up_pid, direct, duration=d, connections=c),
            "nginx proxy": measured(proxy_pid, proxied, duration=d, connections=c),
            "gateway (key)": measured(gw_pid, gateway, duration=d, connections=c, headers=key_h),
            "gateway (bearer)": measured(gw_pid, gateway, duration=d, connections=c, headers=bearer_h),
        }
        half_rate = results["gateway (key)"]["rps"] / 2
        paced_conns = 16
        # wrk's delay() pauses each connection before its next request; the achieved rate is not
        # exactly conns * 1000 / delay, so calibrate the delay on the direct upstream first.
        delay = paced_conns * 1000 / half_rate
        for _ in range(4):
            probe = wrk(direct, duration=3, connections=paced_conns, delay_ms=delay)
            if abs(probe["rps"] - half_rate) / half_rate < 0.1:
                break
            delay *= probe["rps"] / half_rate
        half = {
            "direct upstream": wrk(direct, duration=d, connections=paced_conns, delay_ms=delay),
            "nginx proxy": wrk(proxied, duration=d, connections=paced_conns, delay_ms=delay),
            "gateway (key)": wrk(gateway, duration=d, connections=paced_conns, headers=key_h, delay_ms=delay),
            "gateway (bearer)": wrk(gateway, duration=d, connections=paced_conns, headers=bearer_h, delay_ms=delay),
        }
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM if proc.args[0] != "nginx" else signal.SIGQUIT)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for dir_ in temp_dirs:
            shutil.rmtree(dir_, ignore_errors=True)
        asyncio.run(drop_database(base_db, db_name))

        async def clear_redis() -> None:
            from redis.asyncio import Redis

            client = Redis.from_url(redis_url)
            async for k in client.scan_iter(match=f"mkt-bench-{run}:*", count=1000):
                await client.delete(k)
            await client.aclose()

        asyncio.run(clear_redis())

    print("\nWorker processes: nginx upstream 1, nginx proxy 1 (worker_processes 1), gateway 1 (granian "
          "--workers 1, uvloop); wrk 2 threads; all on this machine's cores.")
    print(f"\nPeak ({c} connections, {d}s each, wrk; CPU = the target's processes, all threads):")
    print(f"  {'target':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'CPU us/req':>12}{'cores':>7}")
    for name, r in results.items():
        print(f"  {name:<18}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non2xx']:>10.0f}"
              f"{r['cpu_us_per_req']:>12.1f}{r['cores']:>7.2f}")
    g, n, u = results["gateway (key)"], results["nginx proxy"], results["direct upstream"]
    print(f"\n  gateway / nginx proxy throughput: {g['rps'] / n['rps']:.1%}  (target >= 10%)")
    print(f"  gateway / direct upstream throughput: {g['rps'] / u['rps']:.1%}")
    b = results["gateway (bearer)"]
    print(f"  bearer (JWT) / key path throughput: {b['rps'] / g['rps']:.1%}")
    print(f"\nAt about half the gateway's peak ({half_rate:.0f} req/s target; {paced_conns} connections paced "
          f"by a {delay:.1f} ms delay):")
    print(f"  {'target':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in half.items():
        print(f"  {name:<18}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}")
    added = half["gateway (key)"]["p50"] - half["direct upstream"]["p50"]
    print(f"\n  added latency at p50 (gateway - direct): {added:.2f} ms  (target < 2 ms)")
    added_bearer = half["gateway (bearer)"]["p50"] - half["direct upstream"]["p50"]
    print(f"  added latency at p50 (gateway bearer - direct): {added_bearer:.2f} ms")
    print(json.dumps({"peak": results, "half_peak": half, "gateway_vs_nginx": g["rps"] / n["rps"],
                      "added_p50_ms": added, "bearer_vs_key": b["rps"] / g["rps"],
                      "added_p50_bearer_ms": added_bearer}))


if __name__ == "__main__":
    main()
