"""End to end in headless Chromium (Debian's `chromium`, driven by Playwright's Python package)
against a real `marketplace serve` on loopback with its in-process worker, and a loopback upstream:
sign up, find an API, use the calculator, subscribe, create a key, call through the gateway, see
the call on the consumer's usage chart and on the partner's dashboard. Every page is checked for
console errors and with axe-core (no serious or critical violations); screenshots go to
artifacts/screenshots/.

Skipped, with the reason, where Chromium or Playwright is not installed (CI installs both)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
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

import httpx
import pytest

from tests.gateway.factories import Upstream

CHROMIUM = os.environ.get("CHROMIUM_PATH") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium")
                                                else shutil.which("chromium") or "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.async_api import async_playwright
except ImportError:  # a user's machine without the browser test tools
    async_playwright = None  # type: ignore[assignment]
try:
    from axe_playwright_python.async_playwright import Axe
except ImportError:
    Axe = None  # type: ignore[assignment,misc]

pytestmark = [
    pytest.mark.skipif(async_playwright is None, reason="playwright is not installed (pip install playwright; "
                       "no `playwright install` needed)"),
    pytest.mark.skipif(Axe is None, reason="axe-core for Python is not installed (pip install axe-playwright-python)"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(platform_env: dict[str, str]) -> Iterator[str]:
    """`marketplace serve` on loopback, on the test run's database and Redis namespace."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **platform_env, "MARKETPLACE_INPROCESS_WORKER": "1", "MARKETPLACE_BASE_URL": base,
           "MARKETPLACE_ALLOW_PRIVATE_NETWORKS": "1", "USAGE_FLUSH_EVERY_SECONDS": "1"}
    log = (ROOT / "artifacts")
    log.mkdir(exist_ok=True)
    out = open(log / "e2e-server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "marketplace", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log / 'e2e-server.log'}")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()


async def publish_api(http: httpx.AsyncClient, upstream: Upstream, name: str) -> dict[str, Any]:
    """A partner publishes an API through the public management API."""
    email = f"partner-{secrets.token_hex(4)}@example.com"
    signup = await http.post("/v1/signup", json={"email": email, "password": "correct horse battery",
                                                 "name": "Pat Partner"})
    assert signup.status_code == 201, signup.text
    headers = {"Authorization": f"Bearer {signup.json()['token']}"}
    partner = (await http.post("/v1/partners", json={"name": "Nimbus Labs"}, headers=headers)).json()
    slug = f"nimbus-{secrets.token_hex(3)}"
    created = await http.post("/v1/apis", headers=headers, json={
        "partner_id": partner["id"], "slug": slug, "name": name, "upstream_url": upstream.url,
        "description": "Hourly forecasts for 200,000 cities.\nAccurate to the street.", "category": "weather",
        "tags": ["forecast", "climate"]})
    assert created.status_code == 201, created.text
    api_id = created.json()["id"]
    for body, path in (({"name": "weather:read", "description": "Read forecasts"}, "scopes"),
                       ({"method": "GET", "path": "/forecast/{city}", "scope": "weather:read",
                         "description": "The forecast for a city"}, "endpoints"),
                       ({"method": "POST", "path": "/alerts", "weight": 5, "description": "Subscribe to alerts"},
                        "endpoints"),
                       ({"name": "Free", "currency": "usd", "included_units": 1000,
                         "quota": {"limit": 1000, "hard": True}, "rate_limit": {"per_second": 5, "per_minute": 100},
                         "scopes": ["weather:read"]}, "plans"),
                       ({"name": "Pro", "currency": "usd", "monthly_fee": 4900, "included_units": 50000,
                         "unit_pricing": {"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"},
                                                                          {"up_to": None, "unit_amount": "0.05"}]},
                         "quota": {"limit": 200000, "hard": False}, "rate_limit": {"per_second": 10, "per_minute": 300},
                         "scopes": ["weather:read"]}, "plans")):
        response = await http.post(f"/v1/apis/{api_id}/{path}", json=body, headers=headers)
        assert response.status_code == 201, response.text
    published = await http.post(f"/v1/apis/{api_id}/publish", headers=headers)
    assert published.status_code == 200, published.text
    return {"slug": slug, "partner_id": partner["id"], "email": email}


class PageChecks:
    """Console errors and axe-core results, collected per page."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("console", lambda msg: self.console_errors.append(f"{page.url}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.console_errors.append(f"{page.url}: {exc}"))

    async def check(self, page: Any, shot: str) -> None:
        await page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        results = await Axe().run(page)
        serious = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                   for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not serious, f"{page.url}: accessibility violations: {serious}"
        assert not self.console_errors, self.console_errors


@pytest.mark.timeout(240)
async def test_a_new_consumer_finds_subscribes_calls_and_sees_the_call(server: str, upstream: Upstream) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    word = f"Nimbus{secrets.token_hex(3)}"
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        world = await publish_api(http, upstream, f"{word} Weather")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                await _consumer_and_partner_journey(browser, server, http, world, word)
            finally:
                await browser.close()


async def _consumer_and_partner_journey(browser: Any, server: str, http: httpx.AsyncClient, world: dict[str, Any],
                                        word: str) -> None:
    checks = PageChecks()
    context = await browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    checks.watch(page)

    # Sign up on the pages.
    await page.goto("/catalog")
    await page.get_by_role("link", name="Sign up").click()
    await checks.check(page, "01-signup")
    await page.get_by_label("Name").fill("Casey Consumer")
    await page.get_by_label("Email").fill(f"casey-{secrets.token_hex(4)}@example.com")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/dashboard")
    await checks.check(page, "02-empty-dashboard")

    # Find the API in the catalog.
    await page.get_by_role("link", name="Find an API in the catalog").click()
    await page.get_by_role("searchbox", name="Search").fill(word)
    await page.get_by_label("Category").select_option("weather")
    await page.get_by_role("button", name="Search").click()
    await checks.check(page, "03-catalog-search")
    await page.get_by_role("link", name=f"{word} Weather").click()
    await page.wait_for_url(f"**/catalog/{world['slug']}")

    # The calculator (a GET form: works without JavaScript).
    await page.get_by_label("Units you expect to use in a month").fill("150000")
    await page.get_by_role("button", name="Estimate").click()
    await page.wait_for_url("**units=150000**")
    pro_quote = await page.locator("td.quote").nth(1).text_content()
    assert pro_quote == "USD 149.00"  # the 4,900 fee + 100,000 units beyond the 50,000 included at 0.1
    await checks.check(page, "04-api-page-calculator")

    # Subscribe to the free plan.
    await page.get_by_role("button", name="Subscribe to Free").click()
    await page.wait_for_url("**/dashboard?notice=subscribed**")
    assert await page.get_by_role("status").text_content() == "Subscribed. Create an API key below to start calling the API."

    # Create a key: shown once.
    await page.get_by_label("Key name").fill("laptop")
    await page.get_by_role("button", name="Create key").click()
    key = (await page.locator("#new-key-value").text_content() or "").strip()
    assert re.fullmatch(r"mk_[A-Za-z0-9]+", key), key
    await checks.check(page, "05-key-created")

    # A call through the gateway to the loopback upstream.
    response = await http.get(f"/gateway/{world['slug']}/forecast/paris", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text

    # The in-process worker flushes usage within seconds; the dashboard shows it.
    deadline = time.monotonic() + 30
    while True:
        await page.goto("/dashboard")
        if (await page.locator(".calls-count").first.text_content()) == "1":
            break
        assert time.monotonic() < deadline, "the call never reached the usage chart"
        await asyncio.sleep(1)
    assert await page.locator("svg rect.bar0").count() == 1  # one day with usage in this period
    assert "1" in (await page.locator("svg rect.bar0 title").first.text_content() or "")
    await checks.check(page, "06-dashboard-usage")
    await page.locator("details", has_text="as a table").first.locator("summary").click()
    assert await page.get_by_role("table").first.is_visible()
    await context.close()

    # The partner sees the subscriber and the call.
    partner = await browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    ppage = await partner.new_page()
    checks.watch(ppage)
    await ppage.goto(f"/login?next=/partner/{world['partner_id']}")
    await ppage.get_by_label("Email").fill(world["email"])
    await ppage.get_by_label("Password").fill("correct horse battery")
    await ppage.get_by_role("button", name="Log in").click()
    await ppage.wait_for_url(f"**/partner/{world['partner_id']}")
    assert await ppage.locator(".partner-calls").first.text_content() == "1"
    assert "Free: 1 subscriber" in (await ppage.locator("main").inner_text())
    await checks.check(ppage, "07-partner-dashboard")

    # The public status page, on a phone-sized screen.
    phone = await browser.new_context(base_url=server, viewport={"width": 390, "height": 844})
    spage = await phone.new_page()
    checks.watch(spage)
    await spage.goto("/status")
    assert await spage.get_by_role("link", name=f"{word} Weather").is_visible()
    await checks.check(spage, "08-status-mobile")
    await spage.goto(f"/catalog/{world['slug']}")
    await checks.check(spage, "09-api-page-mobile")
    await partner.close()
    await phone.close()


@pytest.mark.timeout(120)
async def test_the_pages_work_with_javascript_turned_off(server: str, upstream: Upstream) -> None:
    word = f"Plain{secrets.token_hex(3)}"
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        world = await publish_api(http, upstream, f"{word} Weather")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context(base_url=server, java_script_enabled=False)
                page = await context.new_page()
                await page.goto(f"/signup?next=/catalog?q={word}")
                await page.get_by_label("Name").fill("No Script")
                await page.get_by_label("Email").fill(f"noscript-{secrets.token_hex(4)}@example.com")
                await page.get_by_label("Password").fill("correct horse battery")
                await page.get_by_role("button", name="Sign up").click()
                await page.get_by_role("link", name=f"{word} Weather").click()
                await page.get_by_label("Units you expect to use in a month").fill("50000")
                await page.get_by_role("button", name="Estimate").click()
                assert await page.locator("td.quote").nth(1).text_content() == "USD 49.00"
                await page.get_by_role("button", name="Subscribe to Free").click()
                await page.get_by_label("Key name").fill("no-js")
                await page.get_by_role("button", name="Create key").click()
                key = (await page.locator("#new-key-value").text_content() or "").strip()
                assert key.startswith("mk_")
                assert await page.get_by_role("button", name="Copy").count() == 0  # the script did not run
                response = await http.get(f"/gateway/{world['slug']}/forecast/oslo", headers={"X-API-Key": key})
                assert response.status_code == 200
                await context.close()
            finally:
                await browser.close()
