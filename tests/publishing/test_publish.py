"""Publishing: completeness checks, the api.published event, unpublishing, operator suspension."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from marketplace.core.events import Event
from tests.helpers import Api, assert_problem
from tests.publishing.helpers import complete, db, draft, operator, post_ok, published


async def _events(api_id: str) -> list[tuple[str, dict[str, Any], str | None]]:
    async with db() as session:
        rows = (await session.execute(select(Event.type, Event.data, Event.partner_id)
                                      .where(Event.data["id"].astext == api_id).order_by(Event.id))).all()
    return [(t, d, p) for t, d, p in rows]


async def test_publishing_an_incomplete_api_lists_everything_missing(api: Api) -> None:
    d = await draft(api, description="")
    response = await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers)
    body = assert_problem(response, 422, contains="not ready")
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"description", "endpoints", "plans"}
    assert all(f"/v1/apis/{d.id}" in e["message"] for e in body["errors"])  # each says how to fix it
    assert (await api.client.get(f"/v1/apis/{d.id}", headers=d.user.headers)).json()["status"] == "draft"


async def test_archived_plans_do_not_count_towards_publishing(api: Api) -> None:
    d = await draft(api)
    plan = await complete(api, d)
    await api.client.delete(f"/v1/plans/{plan['id']}", headers=d.user.headers)
    body = assert_problem(await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers), 422)
    assert [e["field"] for e in body["errors"]] == ["plans"]


async def test_an_upstream_that_became_private_blocks_publishing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from marketplace.settings import get_settings

    d = await draft(api, upstream_url="http://127.0.0.1:9000")  # allowed in tests
    await complete(api, d)
    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    body = assert_problem(await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers), 422)
    assert [e["field"] for e in body["errors"]] == ["upstream_url"]


async def test_publishing_a_complete_api_emits_api_published(api: Api) -> None:
    d = await draft(api)
    await complete(api, d)
    response = await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "published" and body["published_at"] and body["revision"] > d.api["revision"]
    again = await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers)
    assert again.status_code == 200 and again.json()["published_at"] == body["published_at"]
    events = await _events(d.id)
    assert [t for t, _, _ in events] == ["api.published"]  # once, not per call
    _, data, partner_id = events[0]
    assert partner_id == d.partner_id and data["slug"] == d.slug and data["status"] == "published"


async def test_unpublishing_takes_the_api_back_to_draft(api: Api) -> None:
    d, _ = await published(api)
    response = await api.client.post(f"/v1/apis/{d.id}/unpublish", headers=d.user.headers)
    assert response.status_code == 200 and response.json()["status"] == "draft"
    assert response.json()["published_at"] is None
    assert [t for t, _, _ in await _events(d.id)] == ["api.published", "api.unpublished"]


async def test_operators_suspend_and_unsuspend_apis(api: Api) -> None:
    d, _ = await published(api)
    op = await operator(api)
    suspended = await api.client.post(f"/v1/admin/apis/{d.id}/suspend", json={"reason": "Malware upstream"},
                                      headers=op.headers)
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    refused = await api.client.post(f"/v1/apis/{d.id}/publish", headers=d.user.headers)
    assert_problem(refused, 409, contains="suspended")
    assert_problem(await api.client.get(f"/v1/catalog/apis/{d.slug}"), 404)
    restored = await api.client.post(f"/v1/admin/apis/{d.id}/unsuspend", headers=op.headers)
    assert restored.status_code == 200 and restored.json()["status"] == "published"
    events = await _events(d.id)
    assert [t for t, _, _ in events] == ["api.published", "api.suspended", "api.unsuspended"]
    assert events[1][1]["reason"] == "Malware upstream"
    assert (await api.client.get(f"/v1/catalog/apis/{d.slug}")).status_code == 200
    listed = await api.client.get("/v1/admin/apis", params={"partner_id": d.partner_id}, headers=op.headers)
    assert [a["id"] for a in listed.json()["data"]] == [d.id]


async def test_a_suspended_draft_returns_to_draft(api: Api) -> None:
    d = await draft(api)
    op = await operator(api)
    await post_ok(api, op, f"/v1/admin/apis/{d.id}/suspend", status=200)
    restored = await post_ok(api, op, f"/v1/admin/apis/{d.id}/unsuspend", status=200)
    assert restored["status"] == "draft"


async def test_non_operators_get_404_on_admin_routes(api: Api) -> None:
    d, _ = await published(api)
    for path in (f"/v1/admin/apis/{d.id}/suspend", f"/v1/admin/apis/{d.id}/unsuspend"):
        assert_problem(await api.client.post(path, headers=d.user.headers), 404)
        assert_problem(await api.client.post(path), 401)
    assert_problem(await api.client.get("/v1/admin/apis", headers=d.user.headers), 404)
    op = await operator(api)
    assert_problem(await api.client.post("/v1/admin/apis/api_missing/suspend", headers=op.headers), 404)
    assert (await api.client.get(f"/v1/apis/{d.id}", headers=d.user.headers)).json()["status"] == "published"
