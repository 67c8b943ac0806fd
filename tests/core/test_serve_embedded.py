"""`marketplace serve` on a machine with no database or Redis configured: it starts the embedded
PostgreSQL and Redis, migrates, and serves, as the README's quick start promises."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_with_nothing_configured_starts_embedded_services(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE",
                                                            "MARKETPLACE_INPROCESS_WORKER")}
    env["MARKETPLACE_DATA_DIR"] = str(tmp_path / "data")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "marketplace", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    ready = json.load(response)
            except OSError:
                time.sleep(0.3)
        assert ready == {"status": "ready", "database": "ok", "redis": "ok"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/signup", method="POST", headers={"content-type": "application/json"},
            data=json.dumps({"email": "first@example.com", "password": "long enough", "name": "First"}).encode())
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
        assert (tmp_path / "data" / "postgres").is_dir() and (tmp_path / "data" / "redis").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
