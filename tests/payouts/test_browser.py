"""The operator's payout page in a real headless Chromium (Playwright, Debian's /usr/bin/chromium)
against a real `marketplace serve` on loopback.

The server runs with payments configured but never calls Stripe itself: approving only enqueues
the transfer jobs, which this test then runs in its own process with respx standing in for Stripe
(so it can count the transfer requests). Skipped, with the reason, when Playwright's Python
package or the chromium binary is missing. CI: `pip install playwright` and
`apt-get install -y chromium` (never `playwright install`: no browser download is needed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx

from tests.billing.factories import make_operator
from tests.helpers import Api
from tests.payouts.factories import FakeTransfers, paid_invoice, seller

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="Playwright's Python package is not installed "
                       "(pip install playwright; no `playwright install` needed)"),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium")),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(platform_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`marketplace serve` from this worktree, on the test run's database and Redis namespace."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **platform_env,
           "MARKETPLACE_BASE_URL": base, "MARKETPLACE_INPROCESS_WORKER": "0",
           # Payments on so the page can approve; nothing in the server calls Stripe (jobs run here).
           "STRIPE_SECRET_KEY": "sk_test_browser", "STRIPE_WEBHOOK_SECRET": "whsec_browser",
           "STRIPE_API_BASE": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "marketplace", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    if json.load(response).get("status") == "ready":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("marketplace serve did not start:\n" + (tmp_path / "serve.log").read_text())
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


async def test_an_operator_holds_a_line_and_approves_the_batch_in_a_real_browser(
        api: Api, sessionmaker: Any, stripe_on: respx.MockRouter, run_jobs: Any, server: str) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    a = await seller(api, sessionmaker, name="Browser Alpha")
    b = await seller(api, sessionmaker, name="Browser Beta")
    await paid_invoice(sessionmaker, a, total=12000)
    await paid_invoice(sessionmaker, b, total=7000, currency="eur")
    created = await api.client.post("/v1/admin/payout-batches", json={"period_end": _now()}, headers=operator.headers)
    assert created.status_code == 201, created.text
    batch = created.json()
    line_a = next(ln["id"] for ln in batch["lines"] if ln["partner_id"] == a.partner_id)
    line_b = next(ln["id"] for ln in batch["lines"] if ln["partner_id"] == b.partner_id)

    assert async_playwright is not None
    shots = ROOT / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                           args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            await page.goto(f"{server}/admin/payouts")
            assert "/login" in page.url  # logged out: sent to log in, and back
            await page.fill("#email", operator.email)
            await page.fill("#password", "correct horse battery")
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{server}/admin/payouts")
            await page.click(f"a[href='/admin/payouts/{batch['id']}']")
            await page.wait_for_url(f"{server}/admin/payouts/{batch['id']}")

            row_b = page.locator(f"#line-{line_b}")
            await row_b.get_by_label("Reason to hold").fill("Tax form missing")
            await row_b.get_by_role("button", name="Hold").click()
            await page.wait_for_selector("[role=status]")
            assert await row_b.get_by_test_id("line-status").inner_text() == "held"
            assert await row_b.get_by_test_id("line-reason").inner_text() == "Tax form missing"

            await page.click("#approve-batch")
            await page.wait_for_selector("text=transfer(s) queued")
            row_a = page.locator(f"#line-{line_a}")
            assert await row_a.get_by_test_id("line-status").inner_text() == "approved"

            await run_jobs()  # the transfer jobs the page enqueued, against respx
            await page.reload()
            assert await row_a.get_by_test_id("line-status").inner_text() == "paid"
            assert await row_b.get_by_test_id("line-status").inner_text() == "held"
            assert await row_b.get_by_role("button", name="Release").is_visible()
            assert await page.get_by_test_id("batch-status").inner_text() == "partially approved"
            assert "120.00" in await row_a.inner_text() and "96.00" in await row_a.inner_text()
            await page.screenshot(path=str(shots / "payouts-batch.png"), full_page=True)
        finally:
            await browser.close()

    assert len(fake.creates_for(line_a)) == 1 and not fake.creates_for(line_b)
    request = fake.creates_for(line_a)[0].request
    assert request.headers["idempotency-key"] == f"payout-line-{line_a}"


def _now() -> str:
    from marketplace.core.db import utcnow

    return utcnow().isoformat()
