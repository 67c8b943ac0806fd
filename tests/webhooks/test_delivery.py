"""Delivery end to end: a real arq worker, PostgreSQL, Redis and a loopback receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from marketplace.core.db import utcnow
from marketplace.core.events import Event, publish
from marketplace.core.ids import new_id
from marketplace.settings import get_settings
from tests.helpers import Api, User, assert_problem
from tests.webhooks.conftest import Receiver
from webhooks import relay
from webhooks.delivery import retry_after_seconds
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


async def endpoint(api: Api, user: User, receiver: Receiver, events: list[str] | None = None,
                   **extra: Any) -> tuple[dict[str, Any], str]:
    name, url = receiver.url()
    response = await api.client.post("/v1/webhook-endpoints", json={"url": url, "events": events or ["*"], **extra},
                                      headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json(), name


async def attempts(api: Api, user: User, endpoint_id: str, query: str = "") -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries{query}", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_deliveries_verify_with_the_reference_library_which_rejects_tampering_and_old_timestamps(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver, ["invoice.paid"])
    event_id = await emit("invoice.paid", {"id": "in_1", "total": 4900}, consumer_id=user.id)
    await run_jobs()
    [got] = receiver.requests[name]
    payload = Webhook(created["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "invoice.paid" and payload["data"] == {"id": "in_1", "total": 4900}
    assert payload["timestamp"].endswith("Z") and set(payload) == {"type", "timestamp", "data"}
    assert got.headers["webhook-id"] == event_id and got.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(got.body.replace(b"4900", b"9999"), got.headers)
    old = {**got.headers, "webhook-timestamp": str(int(time.time()) - 600)}
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(created["secret"]).verify(got.body, old)
    [log] = await attempts(api, user, created["id"])
    assert log["event_id"] == event_id and log["event_type"] == "invoice.paid" and log["attempt"] == 1
    assert log["status"] == "succeeded" and log["status_code"] == 200 and log["error"] is None
    assert log["response"] == "answer 200" and log["at"]


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt_with_the_same_webhook_id(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any, retry_schedule: Any) -> None:
    retry_schedule("0,0,0,0")
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    receiver.script(name, (500, {}), (502, {}))
    event_id = await emit("subscription.created", consumer_id=user.id)
    await run_jobs()
    got = receiver.requests[name]
    assert len(got) == 3
    assert {r.headers["webhook-id"] for r in got} == {event_id}
    assert len({r.body for r in got}) == 1
    log = await attempts(api, user, created["id"])
    assert [(a["attempt"], a["status"], a["status_code"]) for a in log] == [
        (3, "succeeded", 200), (2, "failed", 502), (1, "failed", 500)]
    assert log[2]["error"] == "HTTP 500" and log[2]["next_attempt_at"] is not None
    assert [a["attempt"] for a in await attempts(api, user, created["id"], "?status=failed")] == [2, 1]
    assert [a["attempt"] for a in await attempts(api, user, created["id"], "?status=succeeded")] == [3]
    assert await attempts(api, user, created["id"], "?event_type=invoice.paid") == []
    page = (await api.client.get(f"/v1/webhook-endpoints/{created['id']}/deliveries?limit=2",
                                 headers=user.headers)).json()
    assert page["has_more"] and len(page["data"]) == 2


async def test_delivery_gives_up_after_the_last_scheduled_attempt(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any, retry_schedule: Any, db: Any) -> None:
    retry_schedule("0,0")
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    receiver.script(name, (500, {}), (500, {}), (500, {}))
    await emit("quota.exceeded", consumer_id=user.id)
    await run_jobs()
    assert len(receiver.requests[name]) == 2
    async with db() as session:
        delivery = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == created["id"]))
        ep = await session.get(WebhookEndpoint, created["id"])
    assert delivery.status == "failed" and delivery.attempts == 2 and delivery.finished_at is not None
    assert ep.enabled and ep.failing_since is not None


async def test_a_rolled_back_transaction_sends_nothing(api: Api, receiver: Receiver, db: Any,
                                                      run_jobs: Any) -> None:
    user = await api.signup()
    _, name = await endpoint(api, user, receiver)
    event_id = None
    with pytest.raises(RuntimeError):
        async with db.begin() as session:
            event_id = publish(session, "subscription.canceled", {"id": "sub_1"}, consumer_id=user.id).id
            await session.flush()
            raise RuntimeError("the change failed")
    await run_jobs()
    assert receiver.requests[name] == []
    async with db() as session:
        assert await session.get(Event, event_id) is None


async def test_events_reach_only_their_owners_endpoints_that_subscribe_to_the_type(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any) -> None:
    partner_user, consumer, other = await api.signup(), await api.signup(), await api.signup()
    partner = await api.partner(partner_user)
    _, partner_hook = await endpoint(api, partner_user, receiver, ["subscription.created"],
                                     owner={"partner_id": partner["id"]})
    _, consumer_all = await endpoint(api, consumer, receiver, ["*"])
    _, consumer_invoices = await endpoint(api, consumer, receiver, ["invoice.paid"])
    _, partner_user_own = await endpoint(api, partner_user, receiver, ["*"])  # the user as a consumer
    _, bystander = await endpoint(api, other, receiver, ["*"])
    _, disabled = await endpoint(api, consumer, receiver, ["*"], enabled=False)
    sub = await emit("subscription.created", partner_id=partner["id"], consumer_id=consumer.id)
    inv = await emit("invoice.paid", consumer_id=consumer.id)
    await run_jobs()

    def ids(name: str) -> list[str]:
        return sorted(r.headers["webhook-id"] for r in receiver.requests[name])

    assert ids(partner_hook) == [sub]
    assert ids(consumer_all) == sorted([sub, inv])
    assert ids(consumer_invoices) == [inv]
    assert ids(partner_user_own) == ids(bystander) == ids(disabled) == []


async def test_relaying_twice_enqueues_each_delivery_once(api: Api, receiver: Receiver, db: Any, app: Any,
                                                          run_jobs: Any) -> None:
    user = await api.signup()
    _, name = await endpoint(api, user, receiver)
    async with db.begin() as session:
        publish(session, "payout.paid", {"id": "po_1"}, consumer_id=user.id)
        await session.flush()
        session.info.pop(relay.NUDGE_FLAG)  # no nudge: relay by hand below
    pool = await relay.enqueuer()
    first, second = await asyncio.gather(relay.relay(db, pool), relay.relay(db, pool))
    again = await relay.relay(db, pool)
    assert first + second == 1 and again == 0
    async with db() as session:
        [delivery] = (await session.scalars(select(WebhookDelivery).join(
            WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id).where(
            WebhookEndpoint.consumer_id == user.id))).all()
    assert delivery.job_id == delivery.id
    assert await relay.enqueue_deliveries(pool, [(delivery.id, delivery.job_id)]) == 0  # arq knows the id
    await run_jobs()
    assert len(receiver.requests[name]) == 1


async def test_a_worker_killed_mid_delivery_loses_nothing(api: Api, receiver: Receiver, db: Any,
                                                          run_jobs: Any) -> None:
    """The worker took the lease and died: no job left in Redis. The sweep re-enqueues it."""
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    async with db.begin() as session:
        event = publish(session, "invoice.finalized", {"id": "in_2"}, consumer_id=user.id)
        event.relayed_at = utcnow()
        await session.flush()
        session.add(WebhookDelivery(
            id=new_id("delivery"), event_id=event.id, endpoint_id=created["id"], event_type=event.type,
            trigger="event", status="pending", attempts=0, job_id="job-of-a-dead-worker",
            lease_until=utcnow() - timedelta(seconds=1), next_attempt_at=utcnow() - timedelta(minutes=5),
            created_at=utcnow() - timedelta(minutes=5)))
    requeued = await relay.sweep(db, await relay.enqueuer())  # also a cron job: every minute and at start-up
    assert requeued == 1
    await run_jobs()
    [got] = receiver.requests[name]
    assert got.headers["webhook-id"] == event.id
    async with db() as session:
        delivery = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id))
    assert delivery.status == "succeeded" and delivery.attempts == 1


async def test_a_delivery_still_leased_by_a_live_worker_is_not_sent_twice(
        api: Api, receiver: Receiver, db: Any, run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    async with db.begin() as session:
        event = publish(session, "invoice.finalized", {"id": "in_3"}, consumer_id=user.id)
        event.relayed_at = utcnow()
        await session.flush()
        delivery_id = new_id("delivery")
        session.add(WebhookDelivery(
            id=delivery_id, event_id=event.id, endpoint_id=created["id"], event_type=event.type, trigger="event",
            status="pending", attempts=0, job_id="job-in-flight", lease_until=utcnow() + timedelta(seconds=60),
            next_attempt_at=utcnow() - timedelta(minutes=5), created_at=utcnow()))
    pool = await relay.enqueuer()
    await relay.enqueue_deliveries(pool, [(delivery_id, delivery_id)])
    await run_jobs()
    assert receiver.requests[name] == []


async def test_replay_resends_every_matching_event_since_a_time(api: Api, receiver: Receiver, emit: Any,
                                                                run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver, ["invoice.paid", "invoice.finalized"])
    before = utcnow() - timedelta(seconds=1)
    first = await emit("invoice.finalized", consumer_id=user.id)
    second = await emit("invoice.paid", consumer_id=user.id)
    await emit("subscription.created", consumer_id=user.id)  # not subscribed
    await run_jobs()
    assert len(receiver.requests[name]) == 2
    response = await api.client.post(f"/v1/webhook-endpoints/{created['id']}/replay",
                                     json={"since": before.isoformat()}, headers=user.headers)
    assert response.status_code == 202, response.text
    assert response.json()["events"] == 2
    await run_jobs()
    assert sorted(r.headers["webhook-id"] for r in receiver.requests[name]) == sorted([first, first, second, second])
    triggers = {a["trigger"] for a in await attempts(api, user, created["id"])}
    assert triggers == {"event", "replay"}


async def test_resend_sends_one_event_again_with_its_id(api: Api, receiver: Receiver, emit: Any,
                                                        run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    event_id = await emit("usage.threshold_reached", consumer_id=user.id)
    await run_jobs()
    response = await api.client.post(f"/v1/webhook-endpoints/{created['id']}/deliveries/{event_id}/resend",
                                     headers=user.headers)
    assert response.status_code == 202 and response.json()["event_id"] == event_id
    await run_jobs()
    assert [r.headers["webhook-id"] for r in receiver.requests[name]] == [event_id, event_id]


async def test_the_test_event_reaches_only_that_endpoint(api: Api, receiver: Receiver, run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver, ["invoice.paid"])
    _, other = await endpoint(api, user, receiver, ["*"])
    response = await api.client.post(f"/v1/webhook-endpoints/{created['id']}/test", headers=user.headers)
    assert response.status_code == 202, response.text
    await run_jobs()
    [got] = receiver.requests[name]
    assert json.loads(got.body)["type"] == "webhook.test" and got.headers["webhook-id"] == response.json()["event_id"]
    assert receiver.requests[other] == []


async def test_after_rotation_both_secrets_sign_for_a_day(api: Api, receiver: Receiver, emit: Any,
                                                          run_jobs: Any) -> None:
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    rotated = await api.client.post(f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=user.headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"] != created["secret"] and body["previous_secret"] == created["secret"]
    expires = body["previous_secret_expires_at"]
    assert timedelta(hours=23) < (__import__("datetime").datetime.fromisoformat(expires) - utcnow()) <= timedelta(hours=24)
    await emit("api.published", consumer_id=user.id)
    await run_jobs()
    [got] = receiver.requests[name]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(created["secret"]).verify(got.body, got.headers)
    Webhook(body["secret"]).verify(got.body, got.headers)
    shown = (await api.client.get(f"/v1/webhook-endpoints/{created['id']}/secret", headers=user.headers)).json()
    assert shown["secret"] == body["secret"] and shown["previous_secret"] == created["secret"]


async def test_an_endpoint_answering_410_is_disabled_and_its_owner_is_told_on_another_endpoint(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any) -> None:
    user = await api.signup()
    gone, gone_name = await endpoint(api, user, receiver, ["invoice.paid"])
    _, watcher = await endpoint(api, user, receiver, ["endpoint.disabled"])
    receiver.script(gone_name, (410, {}))
    await emit("invoice.paid", consumer_id=user.id)
    await run_jobs()
    assert len(receiver.requests[gone_name]) == 1
    state = (await api.client.get(f"/v1/webhook-endpoints/{gone['id']}", headers=user.headers)).json()
    assert state["enabled"] is False and "410" in state["disabled_reason"]
    [notice] = receiver.requests[watcher]
    sent = json.loads(notice.body)
    assert sent["type"] == "endpoint.disabled" and sent["data"]["endpoint_id"] == gone["id"]
    await emit("invoice.paid", consumer_id=user.id)
    await run_jobs()
    assert len(receiver.requests[gone_name]) == 1


async def test_an_endpoint_failing_for_five_days_is_disabled(api: Api, receiver: Receiver, emit: Any, db: Any,
                                                             run_jobs: Any, retry_schedule: Any) -> None:
    retry_schedule("0,0,0")
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    _, watcher = await endpoint(api, user, receiver, ["endpoint.disabled"])
    async with db.begin() as session:
        await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == created["id"])
                              .values(failing_since=utcnow() - timedelta(days=5, minutes=1)))
    receiver.script(name, (500, {}), (500, {}), (500, {}))
    await emit("invoice.payment_failed", consumer_id=user.id)
    await run_jobs()
    assert len(receiver.requests[name]) == 1  # no retries once the endpoint is disabled
    state = (await api.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=user.headers)).json()
    assert state["enabled"] is False and "no successful delivery" in state["disabled_reason"]
    assert [json.loads(r.body)["type"] for r in receiver.requests[watcher]] == ["endpoint.disabled"]
    enabled = await api.client.patch(f"/v1/webhook-endpoints/{created['id']}", json={"enabled": True},
                                     headers=user.headers)
    assert enabled.json()["enabled"] is True and enabled.json()["failing_since"] is None


async def test_retry_after_is_honoured_on_429_and_503(api: Api, receiver: Receiver, emit: Any, db: Any,
                                                      run_jobs: Any, retry_schedule: Any) -> None:
    retry_schedule("0,0,0")
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)
    receiver.script(name, (429, {"Retry-After": "1"}), (503, {"Retry-After": "1"}))
    await emit("payout.failed", consumer_id=user.id)
    await run_jobs()
    got = receiver.requests[name]
    assert len(got) == 3
    assert got[1].at - got[0].at >= 0.9 and got[2].at - got[1].at >= 0.9  # the schedule alone says 0 s
    log = await attempts(api, user, created["id"])
    assert [a["status_code"] for a in log] == [200, 503, 429]
    first = log[2]
    from datetime import datetime
    waited = datetime.fromisoformat(first["next_attempt_at"]) - datetime.fromisoformat(first["at"])
    assert timedelta(seconds=0.99) <= waited <= timedelta(seconds=1.01)


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped() -> None:
    now = utcnow()
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None
    date = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28 <= (retry_after_seconds(date, now) or 0) <= 31
    assert retry_after_seconds("99999999", now) == 24 * 3600
    assert retry_after_seconds("-5", now) == 0


async def test_a_url_that_now_resolves_privately_is_refused_at_delivery_time(
        api: Api, receiver: Receiver, emit: Any, run_jobs: Any, retry_schedule: Any, monkeypatch: Any) -> None:
    retry_schedule("0")
    user = await api.signup()
    created, name = await endpoint(api, user, receiver)  # accepted while private networks were allowed
    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    await emit("partner.connect_updated", consumer_id=user.id)
    await run_jobs()
    assert receiver.requests[name] == []
    [log] = await attempts(api, user, created["id"])
    assert log["status"] == "failed" and log["status_code"] is None and "refused" in log["error"]


async def test_old_events_and_attempts_are_purged_after_the_retention(
        api: Api, receiver: Receiver, emit: Any, db: Any, run_jobs: Any) -> None:
    user = await api.signup()
    created, _ = await endpoint(api, user, receiver)
    old_id = await emit("invoice.paid", consumer_id=user.id)
    new_id_ = await emit("invoice.paid", consumer_id=user.id)
    await run_jobs()
    long_ago = utcnow() - timedelta(days=91)
    async with db.begin() as session:
        await session.execute(update(Event).where(Event.id == old_id).values(created_at=long_ago))
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == old_id)
                              .values(created_at=long_ago))
        await session.execute(update(WebhookAttempt).where(WebhookAttempt.event_id == old_id).values(at=long_ago))
    await relay.purge(db)
    async with db() as session:
        assert await session.get(Event, old_id) is None and await session.get(Event, new_id_) is not None
    assert [a["event_id"] for a in await attempts(api, user, created["id"])] == [new_id_]
    gone = await api.client.post(f"/v1/webhook-endpoints/{created['id']}/deliveries/{old_id}/resend",
                                 headers=user.headers)
    assert_problem(gone, 404)


async def test_a_commit_nudges_the_relay_and_the_first_attempt_arrives_within_a_second(
        api: Api, receiver: Receiver, emit: Any) -> None:
    """A running worker (not a burst): no sweep, no cron — only the after-commit nudge."""
    from arq import create_pool

    from marketplace.core.redis import arq_settings, key, queue_name
    from marketplace.worker import build_worker

    user = await api.signup()
    _, name = await endpoint(api, user, receiver)
    pool = await create_pool(arq_settings(), default_queue_name=queue_name())
    worker = build_worker(pool)
    worker.cron_jobs = []  # prove the nudge alone is enough
    task = asyncio.create_task(worker.main())
    try:
        await asyncio.sleep(0.3)  # the worker is up
        latencies = []
        for _ in range(5):
            before = len(receiver.requests[name])
            committed = time.monotonic()
            await emit("subscription.updated", consumer_id=user.id)
            while len(receiver.requests[name]) == before and time.monotonic() - committed < 3:
                await asyncio.sleep(0.005)
            latencies.append(receiver.requests[name][-1].at - committed)
        assert len(receiver.requests[name]) == 5
        assert max(latencies) < 1.0, latencies
        queued = await pool.zrange(queue_name(), 0, -1)
        assert not [j for j in queued if j.decode().startswith(key("webhooks", "relay"))]
    finally:
        for _ in range(200):  # let the last jobs finish (close() cancels running ones)
            if all(t.done() for t in worker.tasks.values()):
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_connection_itself_refuses_private_addresses_so_dns_rebinding_cannot_slip_through(
        monkeypatch: Any) -> None:
    """The pre-flight check passed (DNS said public), then DNS answers 127.0.0.1 at connect time."""
    import httpx

    from webhooks.delivery import PublicOnlyBackend

    monkeypatch.setattr(get_settings(), "allow_private_networks", False)
    backend = PublicOnlyBackend()
    loop = asyncio.get_running_loop()

    async def rebound(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebound)
    import httpcore
    with pytest.raises(httpcore.ConnectError, match="refused"):
        await backend.connect_tcp("rebinding.example.com", 443)
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool._network_backend = backend
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await client.post("http://rebinding.example.com/hook", content=b"{}")
