"""The public catalog: only published APIs, full-text search, filters, cursor pages, details."""

from __future__ import annotations

import random
import string
from typing import Any

from tests.helpers import Api, assert_problem
from tests.publishing.helpers import complete, draft, plan_body, post_ok, published, subscribe_directly


def word() -> str:
    """A made-up word no other test's API contains."""
    return "".join(random.choices(string.ascii_lowercase, k=10))


async def _search(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/v1/catalog/apis", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_catalog_needs_no_token_and_shows_only_published_apis(api: Api) -> None:
    tag = word()
    d, _ = await published(api, tags=[tag])
    hidden = await draft(api, tags=[tag])
    await complete(api, hidden)
    listing = await _search(api, tag=tag)
    assert [a["slug"] for a in listing["data"]] == [d.slug]
    item = listing["data"][0]
    assert item["partner"] == {"id": d.partner_id, "name": "Acme Weather Inc."}
    assert "upstream_url" not in item and "proxy_secret" not in str(item)
    assert_problem(await api.client.get(f"/v1/catalog/apis/{hidden.slug}"), 404, contains="no published api")
    await post_ok(api, d.user, f"/v1/apis/{d.id}/unpublish", status=200)
    assert (await _search(api, tag=tag))["data"] == []


async def test_full_text_search_finds_words_in_name_and_description_best_match_first(api: Api) -> None:
    term = word()
    in_description, _ = await published(api, name="Something else", description=f"Has {term} in its text.")
    in_name, _ = await published(api, name=f"The {term} API", description="Nothing to see.")
    await published(api, name="Unrelated", description="Different words entirely.")
    found = await _search(api, q=term)
    assert [a["slug"] for a in found["data"]] == [in_name.slug, in_description.slug]
    phrase = await _search(api, q=f'"{term} api"')
    assert [a["slug"] for a in phrase["data"]] == [in_name.slug]
    excluded = await _search(api, q=f"{term} -nothing")
    assert [a["slug"] for a in excluded["data"]] == [in_description.slug]
    stemmed, _ = await published(api, name=f"{term} forecasting", description="Weather.")
    assert stemmed.slug in [a["slug"] for a in (await _search(api, q=f"{term} forecasts"))["data"]]


async def test_category_and_tag_filters_combine_with_search(api: Api) -> None:
    category, tag, term = word(), word(), word()
    a, _ = await published(api, category=category, tags=[tag, "shared"], description=f"{term} one")
    b, _ = await published(api, category=category, tags=["other"], description=f"{term} two")
    c, _ = await published(api, category=word(), tags=[tag], description=f"{term} three")
    assert {x["slug"] for x in (await _search(api, category=category))["data"]} == {a.slug, b.slug}
    assert {x["slug"] for x in (await _search(api, tag=tag))["data"]} == {a.slug, c.slug}
    assert [x["slug"] for x in (await _search(api, category=category, tag=tag))["data"]] == [a.slug]
    assert [x["slug"] for x in (await _search(api, q=term, category=category.upper(), tag=tag))["data"]] == [a.slug]


async def test_listing_pages_most_recently_published_first_with_a_cursor(api: Api) -> None:
    tag = word()
    late = await draft(api, tags=[tag])  # created first, published last
    slugs = [(await published(api, tags=[tag]))[0].slug for _ in range(4)]
    await complete(api, late)
    await post_ok(api, late.user, f"/v1/apis/{late.id}/publish", status=200)
    slugs.append(late.slug)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await _search(api, tag=tag, limit=2, **({"starting_after": cursor} if cursor else {}))
        seen += [a["slug"] for a in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            assert cursor is None
            break
    assert seen == list(reversed(slugs))


async def test_search_results_page_by_rank_without_repeats_or_gaps(api: Api) -> None:
    term = word()
    best, _ = await published(api, name=f"{term} {term}", description=f"{term} {term} {term}")
    middle, _ = await published(api, name=f"{term} maps", description="Maps.")
    others = [(await published(api, name="Plain", description=f"Mentions {term}."))[0].slug for _ in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await _search(api, q=term, limit=2, **({"starting_after": cursor} if cursor else {}))
        seen += [a["slug"] for a in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen[:2] == [best.slug, middle.slug]
    assert seen[2:] == list(reversed(others))  # equal rank: newest first


async def test_an_api_page_shows_partner_active_plans_endpoints_and_scopes(api: Api) -> None:
    d, plan = await published(api)
    archived = await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", plan_body(name="Old", monthly_fee=100))
    await api.client.delete(f"/v1/plans/{archived['id']}", headers=d.user.headers)
    free = await post_ok(api, d.user, f"/v1/apis/{d.id}/plans", {"name": "Free", "currency": "usd",
                                                                 "quota": {"limit": 1000, "hard": True}})
    await subscribe_directly(await api.signup(), d, plan["id"])
    await api.client.patch(f"/v1/plans/{plan['id']}", json={"monthly_fee": 5900}, headers=d.user.headers)
    response = await api.client.get(f"/v1/catalog/apis/{d.slug}")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["id"] == d.id and page["partner"]["name"] == "Acme Weather Inc."
    assert page["gateway_path"] == f"/gateway/{d.slug}" and "upstream_url" not in page
    assert [(p["id"], p["version"], p["monthly_fee"], p["free"]) for p in page["plans"]] == [
        (free["id"], 1, 0, True), (plan["id"], 2, 5900, False)]  # cheapest first, current versions only
    assert page["plans"][0]["quota"] == {"limit": 1000, "hard": True}
    assert page["plans"][1]["unit_pricing"]["model"] == "graduated"
    assert [(e["method"], e["path"], e["scope"], e["weight"]) for e in page["endpoints"]] == [
        ("GET", "/forecast/{city}", "weather:read", 1)]
    assert page["scopes"] == [{"name": "weather:read", "description": "Read forecasts"}]


async def test_categories_are_counted_over_published_apis(api: Api) -> None:
    category = word()
    for _ in range(2):
        await published(api, category=category)
    await draft(api, category=category)
    counts = {c["name"]: c["count"] for c in (await api.client.get("/v1/catalog/categories")).json()}
    assert counts[category] == 2


async def test_bad_catalog_parameters_are_problems(api: Api) -> None:
    for params in ({"limit": 0}, {"limit": 1000}, {"limit": "many"}, {"q": "x" * 500}):
        response = await api.client.get("/v1/catalog/apis", params=params)
        assert response.status_code in (400, 422), (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    nothing = await _search(api, q="the and of")  # only stop words: matches nothing, not an error
    assert nothing["data"] == []
    await _search(api, q="\"unterminated -- or | & ! :*")  # odd syntax is not an error either
