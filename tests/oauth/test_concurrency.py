"""authlib runs through the greenlet bridge: concurrent requests interleave, and row locks make
races on one-time credentials safe."""

from __future__ import annotations

import asyncio

from tests.oauth.conftest import World
from tests.oauth.test_attacks import _tokens


async def test_concurrent_token_requests_all_succeed(world: World) -> None:
    created = await world.create_app()
    data = {"grant_type": "client_credentials", "scope": "weather:read"}
    responses = await asyncio.gather(*[
        world.api.client.post("/oauth/token", data=data, auth=(created["client_id"], created["client_secret"]))
        for _ in range(10)])
    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.json()["access_token"] for r in responses}) == 10


async def test_two_simultaneous_refreshes_with_one_token_cannot_both_win(world: World) -> None:
    created, token, _ = await _tokens(world)
    auth = (created["client_id"], created["client_secret"])
    data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    first, second = await asyncio.gather(world.api.client.post("/oauth/token", data=data, auth=auth),
                                         world.api.client.post("/oauth/token", data=data, auth=auth))
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [200, 400], (first.text, second.text)
    winner = first if first.status_code == 200 else second
    # The race looked like a reuse: the family (including the winner's new refresh token) is revoked.
    follow = await world.api.client.post("/oauth/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": winner.json()["refresh_token"]})
    assert follow.json()["error"] == "invalid_grant"
