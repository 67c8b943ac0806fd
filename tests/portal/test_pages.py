"""The portal's pages over HTTP: who sees what, forms guarded by CSRF, friendly errors (never a 500)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import update

from marketplace.settings import get_settings
from partners.publishing.models import Api as ApiRow
from tests.gateway.factories import Upstream, db, flush, make_api, new_key, subscribe
from tests.helpers import Api, unique
from tests.portal.conftest import Browser

PRO = {"name": "Pro", "monthly_fee": 4900, "included_units": 1000, "rate_per_second": 10, "rate_per_minute": 300,
       "quota_limit": 200000, "unit_pricing": {"model": "graduated", "tiers": [
           {"up_to": 100000, "unit_amount": "0.1"}, {"up_to": None, "unit_amount": "0.05"}]}}
FREE = {"name": "Free", "rate_per_second": 100, "rate_per_minute": 1000, "quota_limit": 1000, "quota_hard": True,
        "scopes": ["weather:read"]}


async def catalog_api(app: Any, api: Api, upstream: Upstream, **fields: Any) -> Any:
    world = await make_api(app, api, upstream.url, plans=[FREE, PRO])
    values = {"name": fields.get("name", "Weather"), "description": fields.get("description", "Hourly forecasts."),
              "category": fields.get("category"), "tags": fields.get("tags", [])}
    async with db().begin() as session:
        await session.execute(update(ApiRow).where(ApiRow.id == world.api_id).values(**values))
    return world


# --- catalog ----------------------------------------------------------------------------------

async def test_catalog_search_and_filters_show_published_apis_only(app, api: Api, upstream: Upstream,
                                                                 anonymous: Browser) -> None:
    word = unique("zephyr").replace("-", "")
    world = await catalog_api(app, api, upstream, name=f"Weather {word}", category="meteo", tags=["forecast"])
    draft = await make_api(app, api, upstream.url, status="draft")
    async with db().begin() as session:
        await session.execute(update(ApiRow).where(ApiRow.id == draft.api_id).values(name=f"Draft {word}"))
    found = await anonymous.get("/catalog", params={"q": word})
    assert found.status_code == 200 and f"/catalog/{world.slug}" in found.text
    assert "Free plan · paid plans from USD 49.00 a month" in found.text
    assert f"Draft {word}" not in found.text
    by_category = await anonymous.get("/catalog", params={"category": "meteo", "q": word})
    assert f"/catalog/{world.slug}" in by_category.text
    other = await anonymous.get("/catalog", params={"category": "finance", "q": word})
    assert f"/catalog/{world.slug}" not in other.text and "No published API matches" in other.text
    tagged = await anonymous.get("/catalog", params={"tag": "forecast", "q": word})
    assert f"/catalog/{world.slug}" in tagged.text


@pytest.mark.parametrize("query", ["?starting_after=%00nonsense", "?q=" + "x" * 5000, "?q=%22unclosed&tag=%00"])
async def test_catalog_bad_input_gives_a_page_not_an_error(anonymous: Browser, query: str) -> None:
    response = await anonymous.get("/catalog" + query)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]


async def test_api_page_shows_plans_snippets_and_calculator(app, api: Api, upstream: Upstream,
                                                           anonymous: Browser) -> None:
    world = await catalog_api(app, api, upstream)
    response = await anonymous.get(f"/catalog/{world.slug}", params={"units": "150000"})
    assert response.status_code == 200
    html = response.text
    assert "USD 49.00" in html and "Pro" in html and "Free" in html
    # 150,000 units, 1,000 included: the 149,000 beyond are tiered: 100,000 * 0.1 + 49,000 * 0.05
    # = 12,450 minor units, plus the 4,900 fee.
    pro = re.search(rf'data-plan="{world.plans["Pro"]}" class="quote">([^<]+)<', html)
    assert pro and pro[1] == "USD 173.50"
    free = re.search(rf'data-plan="{world.plans["Free"]}" class="quote">([^<]+)<', html)
    assert free and free[1] == "USD 0.00"
    gateway = f"{get_settings().base_url}/gateway/{world.slug}/forecast/CITY"
    for marker in ("curl -X GET", "httpx.request", "await fetch(", "http.NewRequest", "Scope <code>weather:read"):
        assert marker in html, marker
    assert html.count(gateway) >= 4
    assert "Log in to subscribe" in html  # logged out: no form, a way in


@pytest.mark.parametrize("units", ["-5", "lots", "1e99", "99999999999999999999"])
async def test_calculator_refuses_bad_units_kindly(app, api: Api, upstream: Upstream, anonymous: Browser,
                                                   units: str) -> None:
    world = await catalog_api(app, api, upstream)
    response = await anonymous.get(f"/catalog/{world.slug}", params={"units": units})
    assert response.status_code == 200 and "Enter a whole number of units" in response.text


async def test_unknown_api_page_is_a_404_page(anonymous: Browser) -> None:
    response = await anonymous.get("/catalog/no-such-api-here")
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert "No such API" in response.text


# --- subscribing ------------------------------------------------------------------------------

async def test_subscribe_needs_login_then_a_valid_csrf_token(app, api: Api, upstream: Upstream, anonymous: Browser,
                                                            browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    plan = world.plans["Free"]
    logged_out = await anonymous.post(f"/catalog/{world.slug}/subscribe", {"plan_id": plan})
    assert logged_out.status_code == 303 and logged_out.headers["location"] == f"/login?next=/catalog/{world.slug}"
    user = await api.signup("Consumer")
    browser = await browser_for(user)
    missing = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": plan})
    wrong = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": plan, "csrf_token": "0" * 64})
    assert missing.status_code == wrong.status_code == 403 and "This form has expired" in wrong.text
    listed = await api.client.get("/v1/subscriptions", headers=user.headers)
    assert listed.json()["data"] == []
    token = await browser.csrf(f"/catalog/{world.slug}")
    done = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": plan, "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"].startswith("/dashboard?notice=subscribed")
    listed = await api.client.get("/v1/subscriptions", headers=user.headers)
    assert [s["plan_id"] for s in listed.json()["data"]] == [plan]
    again = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": plan, "csrf_token": token})
    assert again.status_code == 409 and "already subscribe" in again.text


async def test_paid_plan_without_payment_method_shows_the_billing_message(app, api: Api, upstream: Upstream,
                                                                          browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    browser = await browser_for(await api.signup("Consumer"))
    token = await browser.csrf(f"/catalog/{world.slug}")
    response = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": world.plans["Pro"],
                                                                       "csrf_token": token})
    assert response.status_code == 402
    assert "no payment method" in response.text and 'href="/dashboard#billing"' in response.text


async def test_subscribing_to_a_plan_that_does_not_exist_is_a_friendly_page(app, api: Api, upstream: Upstream,
                                                                            browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    browser = await browser_for(await api.signup("Consumer"))
    token = await browser.csrf(f"/catalog/{world.slug}")
    response = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": "pln_nope\x00", "csrf_token": token})
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]


# --- consumer dashboard -----------------------------------------------------------------------

async def test_dashboard_requires_login(anonymous: Browser) -> None:
    response = await anonymous.get("/dashboard")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/dashboard"


async def test_key_is_shown_once_works_at_the_gateway_and_can_be_revoked(app, api: Api, upstream: Upstream,
                                                                         browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    user = await api.signup("Consumer")
    sub = await subscribe(api, user, world.plans["Free"])
    browser = await browser_for(user)
    token = await browser.csrf()
    refused = await browser.post("/dashboard/api-keys", {"subscription_id": sub["id"], "name": "laptop"})
    assert refused.status_code == 403
    created = await browser.post("/dashboard/api-keys", {"subscription_id": sub["id"], "name": "laptop",
                                                         "csrf_token": token})
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-key-value">(mk_[A-Za-z0-9]+)<', created.text)
    assert key, created.text
    called = await api.client.get(f"/gateway/{world.slug}/forecast/paris", headers={"X-API-Key": key[1]})
    assert called.status_code == 200
    later = await browser.get("/dashboard")
    assert key[1] not in later.text and key[1][:11] in later.text  # the prefix only, from now on
    await flush(app)
    later = await browser.get("/dashboard")
    assert re.search(r'class="calls-count">1<', later.text), "the call is counted on the dashboard"
    key_id = re.search(r'action="/dashboard/api-keys/(key_[0-9a-z]+)/revoke"', later.text)
    assert key_id
    bad = await browser.post(f"/dashboard/api-keys/{key_id[1]}/revoke", {"csrf_token": "f" * 64})
    assert bad.status_code == 403
    revoked = await browser.post(f"/dashboard/api-keys/{key_id[1]}/revoke", {"csrf_token": token})
    assert revoked.status_code == 303
    import asyncio

    for _ in range(50):
        refused_call = await api.client.get(f"/gateway/{world.slug}/forecast/paris", headers={"X-API-Key": key[1]})
        if refused_call.status_code == 401:
            break
        await asyncio.sleep(0.05)
    assert refused_call.status_code == 401


async def test_another_consumers_key_and_subscription_are_not_found(app, api: Api, upstream: Upstream,
                                                                    browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    owner = await api.signup("Owner")
    sub = await subscribe(api, owner, world.plans["Free"])
    key = await new_key(api, owner, sub["id"])
    intruder = await browser_for(await api.signup("Intruder"))
    token = await intruder.csrf()
    revoke = await intruder.post(f"/dashboard/api-keys/{key['id']}/revoke", {"csrf_token": token})
    create = await intruder.post("/dashboard/api-keys", {"subscription_id": sub["id"], "name": "x", "csrf_token": token})
    cancel = await intruder.post(f"/dashboard/subscriptions/{sub['id']}/cancel", {"csrf_token": token})
    grant = await intruder.post("/dashboard/grants/grt_nope/revoke", {"csrf_token": token})
    assert revoke.status_code == 404 and cancel.status_code == 404 and grant.status_code == 404
    assert create.status_code == 404 and "No subscription" in create.text
    keys = await api.client.get("/v1/api-keys", headers=owner.headers)
    assert [k["id"] for k in keys.json()] == [key["id"]]
    assert sub["id"] not in (await intruder.get("/dashboard")).text


async def test_dashboard_lists_apps_grants_webhooks_and_partners(app, api: Api, browser_for) -> None:  # type: ignore[no-untyped-def]
    user = await api.signup("Builder")
    created = await api.client.post("/v1/apps", json={"name": "My CLI", "redirect_uris": ["http://127.0.0.1/cb"]},
                                    headers=user.headers)
    assert created.status_code == 201, created.text
    hook = await api.client.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                                                "owner": {}}, headers=user.headers)
    assert hook.status_code == 201, hook.text
    partner = await api.partner(user, "Builder Co")
    browser = await browser_for(user)
    html = (await browser.get("/dashboard")).text
    assert "My CLI" in html and "http://127.0.0.1:9/hook" in html and f"/partner/{partner['id']}" in html
    token = csrf_of_page(html)
    deleted = await browser.post(f"/dashboard/apps/{created.json()['client_id']}/delete", {"csrf_token": token})
    assert deleted.status_code == 303
    assert "My CLI" not in (await browser.get("/dashboard")).text


def csrf_of_page(html: str) -> str:
    from tests.portal.conftest import csrf_of

    return csrf_of(html)


# --- partner dashboard ------------------------------------------------------------------------

async def test_partner_page_is_for_members_only(app, api: Api, upstream: Upstream, anonymous: Browser,
                                                browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    logged_out = await anonymous.get(f"/partner/{world.partner_id}")
    assert logged_out.status_code == 303 and logged_out.headers["location"] == f"/login?next=/partner/{world.partner_id}"
    stranger = await browser_for(await api.signup("Stranger"))
    hidden = await stranger.get(f"/partner/{world.partner_id}")
    assert hidden.status_code == 404 and "Weather" not in hidden.text
    token = await stranger.csrf()
    onboarding = await stranger.post(f"/partner/{world.partner_id}/connect", {"csrf_token": token})
    assert onboarding.status_code == 404
    assert (await stranger.get("/partner/prt_nope")).status_code == 404


async def test_partner_sees_subscribers_usage_and_errors(app, api: Api, upstream: Upstream,
                                                         browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    consumer = await api.signup("Consumer")
    sub = await subscribe(api, consumer, world.plans["Free"])
    key = await new_key(api, consumer, sub["id"])
    for path in ("/forecast/paris", "/forecast/rome", "/fail"):
        await api.client.get(f"/gateway/{world.slug}{path}", headers={"X-API-Key": key["key"]})
    await flush(app)
    await app.state.gateway.stats.flush(db())
    partner = await browser_for(world.partner_user)
    response = await partner.get(f"/partner/{world.partner_id}")
    assert response.status_code == 200
    html = response.text
    assert f'<a href="/partner/{world.partner_id}" aria-current="page">' in html  # in the navigation
    assert "Free: <strong>1</strong> subscriber" in html and "Pro: <strong>0</strong> subscribers" in html
    assert re.search(r'class="partner-calls">2<', html)  # billable calls; the failed one is not billed
    assert "33.33 %" in html  # 1 failed of 3 admitted calls in the last 24 h
    assert re.search(r'class="latency">\d+ / \d+ ms<', html)  # the gateway's p50 / p95
    assert "<svg" in html and "calls per day" in html


async def test_connect_onboarding_without_payments_explains_why(app, api: Api, upstream: Upstream,
                                                                browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    partner = await browser_for(world.partner_user)
    token = await partner.csrf(f"/partner/{world.partner_id}")
    missing = await partner.post(f"/partner/{world.partner_id}/connect")
    assert missing.status_code == 403
    response = await partner.post(f"/partner/{world.partner_id}/connect", {"csrf_token": token})
    assert response.status_code == 503 and "STRIPE_SECRET_KEY" in response.text


async def test_connect_onboarding_redirects_to_stripe(app, api: Api, upstream: Upstream, browser_for,  # type: ignore[no-untyped-def]
                                                     stripe_api) -> None:
    import httpx

    world = await catalog_api(app, api, upstream)
    stripe_api.post("/v1/accounts").mock(return_value=httpx.Response(200, json={"id": "acct_portal", "object": "account"}))
    stripe_api.post("/v1/account_links").mock(return_value=httpx.Response(200, json={
        "object": "account_link", "url": "https://connect.stripe.test/setup/e/acct_portal", "expires_at": 1900000000}))
    partner = await browser_for(world.partner_user)
    token = await partner.csrf(f"/partner/{world.partner_id}")
    response = await partner.post(f"/partner/{world.partner_id}/connect", {"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "https://connect.stripe.test/setup/e/acct_portal"


# --- status, metrics, sign-up -----------------------------------------------------------------

async def test_status_page_is_public_and_shows_availability(app, api: Api, upstream: Upstream,
                                                             anonymous: Browser) -> None:
    world = await catalog_api(app, api, upstream, name=f"Status {unique('api')}")
    consumer = await api.signup("Consumer")
    sub = await subscribe(api, consumer, world.plans["Free"])
    key = await new_key(api, consumer, sub["id"])
    for path in ("/forecast/a", "/forecast/b", "/forecast/c", "/fail"):
        await api.client.get(f"/gateway/{world.slug}{path}", headers={"X-API-Key": key["key"]})
    await app.state.gateway.stats.flush(db())
    response = await anonymous.get("/status")
    assert response.status_code == 200
    row = re.search(rf'href="/catalog/{world.slug}">.*?</tr>', response.text, re.S)
    assert row and row[0].count("75.00 %") == 2
    assert len(re.findall(r"\d+ / \d+ ms", row[0])) == 2  # p50 / p95 over 24 h and 30 days


async def test_metrics_is_hidden_without_a_token_and_checks_it(app, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "metrics_token", None)
    assert (await api.client.get("/metrics")).status_code == 404
    monkeypatch.setattr(settings, "metrics_token", "s3cret-metrics")
    assert (await api.client.get("/metrics")).status_code == 401
    assert (await api.client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
    response = await api.client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    for name in ("marketplace_usage_flush_lag_seconds", "marketplace_webhook_queue_depth",
                 "marketplace_webhook_failed_attempts_last_hour", "python_info",
                 "marketplace_gateway_requests", "marketplace_gateway_latency_seconds"):
        assert name in response.text, name


async def test_flush_lag_is_the_age_of_the_oldest_unflushed_usage_entry(app) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from marketplace.metering.service import flush_lag_seconds, stream_key
    from tests.gateway.factories import redis_client

    redis = redis_client()
    try:
        await flush(app)
        assert await flush_lag_seconds(redis) == 0.0
        await redis.xadd(stream_key(), {"r": "bogus"})
        assert await flush_lag_seconds(redis) < 5
        lag = await flush_lag_seconds(redis, now=datetime.now(UTC) + timedelta(seconds=90))
        assert 89 <= lag <= 95
    finally:
        await flush(app)  # the malformed entry is logged and acknowledged
        await redis.aclose()


async def test_signup_page_creates_an_account_and_logs_in(app, anonymous: Browser) -> None:
    email = f"{unique('new')}@example.com"
    response = await anonymous.post("/signup", {"name": "New Person", "email": email, "password": "long enough pw",
                                                "next": "/catalog"})
    assert response.status_code == 303 and response.headers["location"] == "/catalog"
    dashboard = await anonymous.get("/dashboard")
    assert dashboard.status_code == 200 and email in dashboard.text
    again = await anonymous.post("/signup", {"name": "Twin", "email": email, "password": "long enough pw"})
    assert again.status_code in (409, 422) and "text/html" in again.headers["content-type"]
    short = await anonymous.post("/signup", {"name": "X", "email": "x@example.com", "password": "short"})
    assert short.status_code == 422 and "at least 8 characters" in short.text


async def test_daily_usage_puts_a_call_in_its_own_period_even_within_the_starting_hour(
        app, api: Api, upstream: Upstream) -> None:
    from datetime import datetime

    from marketplace.metering.service import daily_usage
    from marketplace.subscriptions.periods import add_months

    world = await catalog_api(app, api, upstream)
    consumer = await api.signup("Consumer")
    sub = await subscribe(api, consumer, world.plans["Free"])
    key = await new_key(api, consumer, sub["id"])
    assert (await api.client.get(f"/gateway/{world.slug}/forecast/x", headers={"X-API-Key": key["key"]})).status_code == 200
    await flush(app)
    start = datetime.fromisoformat(sub["current_period_start"])
    end = datetime.fromisoformat(sub["current_period_end"])
    async with db().begin() as session:
        current = await daily_usage(session, sub["id"], start, end)
        previous = await daily_usage(session, sub["id"], add_months(start, -1), start)
    assert [(calls, units) for _, calls, units in current] == [(1, 1)]
    assert previous == []  # the call's hour began before the period did, but the call did not


# --- billing on the pages ---------------------------------------------------------------------

async def give_payment_method(user_id: str) -> None:
    from marketplace.billing.models import BillingCustomer

    async with db().begin() as session:
        session.add(BillingCustomer(consumer_id=user_id, stripe_customer_id=f"cus_{user_id[-10:]}",
                                    default_payment_method="pm_card_visa"))


async def test_paid_plan_with_a_card_subscribes_and_shows_estimate_budget_and_invoice(
        app, api: Api, upstream: Upstream, browser_for) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from marketplace.billing import service as billing
    from marketplace.core.db import utcnow
    from marketplace.subscriptions.models import Subscription

    world = await catalog_api(app, api, upstream)
    user = await api.signup("Payer")
    await give_payment_method(user.id)
    browser = await browser_for(user)
    token = await browser.csrf(f"/catalog/{world.slug}")
    done = await browser.post(f"/catalog/{world.slug}/subscribe", {"plan_id": world.plans["Pro"], "csrf_token": token})
    assert done.status_code == 303, done.text
    html = (await browser.get("/dashboard")).text
    assert re.search(r'class="estimate-total">USD 49.00<', html) and "A card is on file" in html
    sub_id = re.search(r'id="sub-(sub_[0-9a-z]+)"', html)
    assert sub_id

    # Budget: a friendly refusal for nonsense, then saved.
    bad = await browser.post(f"/dashboard/subscriptions/{sub_id[1]}/budget", {"amount": "lots", "csrf_token": token})
    assert bad.status_code == 422 and "Enter the budget as an amount in USD" in bad.text
    assert (await browser.post(f"/dashboard/subscriptions/{sub_id[1]}/budget", {"amount": "60"})).status_code == 403
    saved = await browser.post(f"/dashboard/subscriptions/{sub_id[1]}/budget",
                               {"amount": "60.50", "hard_cap": "on", "csrf_token": token})
    assert saved.status_code == 303
    html = (await browser.get("/dashboard")).text
    assert "Budget: USD 60.50 a month, hard cap" in html

    # The period ends and is invoiced: the invoice is listed.
    async with db().begin() as session:
        sub = await session.get(Subscription, sub_id[1])
        sub.current_period_start, sub.current_period_end = utcnow() - timedelta(days=31), utcnow() - timedelta(minutes=1)
        await session.flush()
        invoice = await billing.close_subscription(session, sub)
    assert invoice is not None
    html = (await browser.get("/dashboard")).text
    row = re.search(rf"<th scope=\"row\">{invoice.number}</th>.*?</tr>", html, re.S)
    assert row and "USD 49.00" in row[0]


async def test_budget_of_another_consumers_subscription_is_not_found(app, api: Api, upstream: Upstream,
                                                                     browser_for) -> None:  # type: ignore[no-untyped-def]
    world = await catalog_api(app, api, upstream)
    owner = await api.signup("Owner")
    sub = await subscribe(api, owner, world.plans["Free"])
    intruder = await browser_for(await api.signup("Intruder"))
    token = await intruder.csrf()
    response = await intruder.post(f"/dashboard/subscriptions/{sub['id']}/budget", {"amount": "5", "csrf_token": token})
    assert response.status_code == 404


async def test_billing_setup_redirects_to_stripe_checkout(app, api: Api, browser_for, stripe_api) -> None:  # type: ignore[no-untyped-def]
    import httpx

    stripe_api.post("/v1/customers").mock(return_value=httpx.Response(200, json={"id": "cus_portal", "object": "customer"}))
    stripe_api.post("/v1/checkout/sessions").mock(return_value=httpx.Response(200, json={
        "id": "cs_portal", "object": "checkout.session", "url": "https://checkout.stripe.test/c/cs_portal"}))
    browser = await browser_for(await api.signup("Card Holder"))
    page = await browser.get("/dashboard")
    assert "Add a payment method with Stripe" in page.text
    token = await browser.csrf()
    assert (await browser.post("/dashboard/billing/setup")).status_code == 403
    response = await browser.post("/dashboard/billing/setup", {"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "https://checkout.stripe.test/c/cs_portal"


async def test_billing_setup_without_payments_explains_why(app, api: Api, browser_for) -> None:  # type: ignore[no-untyped-def]
    browser = await browser_for(await api.signup("No Stripe"))
    token = await browser.csrf()
    response = await browser.post("/dashboard/billing/setup", {"csrf_token": token})
    assert response.status_code == 503 and "STRIPE_SECRET_KEY" in response.text


def test_metrics_in_multiprocess_mode_read_the_workers_directory(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from prometheus_client.mmap_dict import MmapedDict

    from marketplace.portal import metrics

    # A worker's counter file, as prometheus_client writes it in multi-process mode.
    store = MmapedDict(str(tmp_path / "counter_4242.db"))
    store.write_value(json.dumps(["gateway_calls", "gateway_calls_total", {}, "calls"]), 7.0, 0.0)
    store.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = (metrics.process_metrics() + metrics.gauges_text({"webhook_queue_depth": 3.0})).decode()
    assert "gateway_calls_total 7.0" in text
    assert "marketplace_webhook_queue_depth 3.0" in text


@pytest.mark.parametrize(("pricing", "currency", "lines"), [
    (None, "usd", ["No usage charge"]),
    ({"model": "per_unit", "unit_amount": "2.5"}, "usd", ["USD 0.025 per unit"]),
    ({"model": "per_unit", "unit_amount": "3"}, "jpy", ["JPY 3 per unit"]),
    ({"model": "package", "package_size": 1000, "package_amount": "500"}, "eur", ["EUR 5.00 per 1,000 units (whole packages)"]),
    ({"model": "graduated", "tiers": [{"up_to": 100000, "unit_amount": "0.1"}, {"up_to": None, "unit_amount": "0.05"}]},
     "usd", ["Tiered, each unit at its tier's price:", "1–100,000: USD 0.001 per unit",
             "above 100,000: USD 0.0005 per unit"]),
])
def test_unit_prices_are_shown_in_the_currency_not_in_minor_units(pricing, currency: str, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    from marketplace.portal.service import unit_price

    assert unit_price(pricing, currency) == lines


def test_money_is_formatted_from_minor_units() -> None:
    from marketplace.portal.service import money

    assert money(4900, "usd") == "USD 49.00" and money(123456789, "eur") == "EUR 1,234,567.89"
    assert money(500, "jpy") == "JPY 500" and money(-5, "usd") == "-USD 0.05"


async def test_partner_sees_earnings_balance_and_payouts(app, api: Api, browser_for) -> None:  # type: ignore[no-untyped-def]
    from tests.payouts.factories import paid_invoice, seller

    sellers = await seller(api, db(), name="Earner")
    await paid_invoice(db(), sellers, total=10000, days_ago=10)  # past the 7-day holding period
    await paid_invoice(db(), sellers, total=5000, days_ago=1)  # still in it
    partner = await browser_for(sellers.owner)
    html = (await partner.get(f"/partner/{sellers.partner_id}")).text
    balance = re.search(r'<table class="balances">.*?</table>', html, re.S)
    assert balance, html
    cells = re.findall(r"<td>([^<]+)</td>", balance[0])
    # earned, paid out, in holding, in a batch, held, next payout: 80 % of each invoice is the partner's.
    assert cells == ["USD 120.00", "USD 0.00", "USD 40.00", "USD 0.00", "USD 0.00", "USD 80.00"]
    assert "No payouts yet." in html
    earnings = re.search(r"Earnings by month.*?</table>", html, re.S)
    assert earnings
    # One row per month of the invoices' periods: both invoices in one month, or one in each.
    assert ("USD 150.00" in earnings[0] and "USD 120.00" in earnings[0]) or \
        all(amount in earnings[0] for amount in ("USD 100.00", "USD 80.00", "USD 50.00", "USD 40.00"))


async def test_operators_get_a_link_to_the_payout_review(app, api: Api, browser_for) -> None:  # type: ignore[no-untyped-def]
    from marketplace.accounts.models import User as UserRow

    operator, consumer = await api.signup("Operator"), await api.signup("Consumer")
    async with db().begin() as session:
        await session.execute(update(UserRow).where(UserRow.id == operator.id).values(is_operator=True))
    assert 'href="/admin/payouts"' in (await (await browser_for(operator)).get("/dashboard")).text
    assert 'href="/admin/payouts"' not in (await (await browser_for(consumer)).get("/dashboard")).text
