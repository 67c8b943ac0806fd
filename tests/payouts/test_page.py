"""The operator's page over HTTP (forms, CSRF, CSV); the real-browser run is in test_browser.py."""

from __future__ import annotations

import re
from typing import Any

import httpx
import respx

from tests.billing.factories import make_operator
from tests.helpers import Api, User
from tests.payouts.factories import FakeTransfers, paid_invoice, seller


async def session_cookie(api: Api, user: User) -> dict[str, str]:
    response = await api.client.post("/login", data={"email": user.email, "password": "correct horse battery",
                                                     "next": "/admin/payouts"})
    assert response.status_code == 303 and response.headers["location"] == "/admin/payouts"
    cookie = response.cookies["mkt_session"]
    api.client.cookies.clear()  # the shared client must not stay signed in
    return {"Cookie": f"mkt_session={cookie}"}


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, html
    return match[1]


async def test_operators_review_a_batch_on_the_page(api: Api, sessionmaker: Any, stripe_on: respx.MockRouter,
                                                    run_jobs: Any) -> None:
    fake = FakeTransfers(stripe_on)
    operator = await make_operator(api, sessionmaker)
    a, b = await seller(api, sessionmaker, name="Page Alpha"), await seller(api, sessionmaker, name="Page Beta")
    await paid_invoice(sessionmaker, a, total=5000)
    await paid_invoice(sessionmaker, b, total=6000)
    cookie = await session_cookie(api, operator)
    client: httpx.AsyncClient = api.client

    index = await client.get("/admin/payouts", headers=cookie)
    assert index.status_code == 200 and "<h1>Payout batches</h1>" in index.text
    token = csrf(index.text)
    refused = await client.post("/admin/payouts", data={"period_end": "2026-11-21"}, headers=cookie)
    assert refused.status_code == 403 and "CSRF" in refused.text
    created = await client.post("/admin/payouts", data={"period_end": "2999-01-01", "csrf_token": token},
                                headers=cookie)
    assert created.status_code == 303 and created.headers["location"].startswith("/admin/payouts/pob_")
    batch_id = created.headers["location"].split("/")[-1].split("?")[0]

    page = await client.get(f"/admin/payouts/{batch_id}", headers=cookie)
    assert page.status_code == 200 and "Page Alpha" in page.text and "Page Beta" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    lines = dict(re.findall(r'data-line="(po_[0-9a-z]+)">\s*<th scope="row">([^<]+)<', page.text))
    line_a = next(k for k, v in lines.items() if v == "Page Alpha")
    line_b = next(k for k, v in lines.items() if v == "Page Beta")

    no_reason = await client.post(f"/admin/payouts/{batch_id}/lines/{line_b}/hold",
                                  data={"csrf_token": token, "reason": " "}, headers=cookie)
    assert no_reason.status_code == 303 and "error=" in no_reason.headers["location"]
    held = await client.post(f"/admin/payouts/{batch_id}/lines/{line_b}/hold",
                             data={"csrf_token": token, "reason": "Tax form missing"}, headers=cookie)
    assert held.status_code == 303
    approved = await client.post(f"/admin/payouts/{batch_id}/approve", data={"csrf_token": token}, headers=cookie)
    assert approved.status_code == 303 and "notice=" in approved.headers["location"]
    await run_jobs()

    after = (await client.get(f"/admin/payouts/{batch_id}", headers=cookie)).text
    assert "Tax form missing" in after
    row_a = after.split(f'data-line="{line_a}"')[1].split("</tr>")[0]
    row_b = after.split(f'data-line="{line_b}"')[1].split("</tr>")[0]
    assert ">paid<" in row_a and ">held<" in row_b and "Release" in row_b
    assert len(fake.creates_for(line_a)) == 1 and not fake.creates_for(line_b)

    export = await client.get(f"/admin/payouts/{batch_id}/export.csv", headers=cookie)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "Tax form missing" in export.text and line_a in export.text
    listing = await client.get("/admin/payouts", headers=cookie)
    assert batch_id in listing.text


def test_money_is_shown_in_major_units_and_csv_cells_cannot_become_formulas() -> None:
    from payouts.routes import money
    from payouts.service import _cell

    assert money(123456, "usd") == "1,234.56" and money(-5, "eur") == "-0.05" and money(1200, "jpy") == "1,200"
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and _cell("ok") == "ok" and _cell(-5) == -5
