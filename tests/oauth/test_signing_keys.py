"""The signing key set: published at the jwks_uri, rotated, old keys kept until their tokens expire."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from marketplace.core.db import utcnow
from marketplace.settings import get_settings
from oauth import keys
from oauth.models import SigningKey
from oauth.tokens import KeyRing, verify_access_token
from tests.oauth.conftest import World


async def test_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(world: World) -> None:
    created = await world.create_app()
    client = world.oauth_client(created)
    old = await client.fetch_token(world.meta["token_endpoint"], grant_type="client_credentials", scope="weather:read")
    async with world.app.state.sessionmaker.begin() as session:
        new_key = await keys.rotate_signing_key(session)
    await keys.refresh_key_ring(world.app.state.sessionmaker)  # this process's ring, for the other tests
    new = await client.fetch_token(world.meta["token_endpoint"], grant_type="client_credentials", scope="weather:read")
    old_kid = old["access_token"].split(".")[0]
    assert old_kid != new["access_token"].split(".")[0]

    jwks = (await world.api.client.get("/.well-known/jwks.json")).json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert kids[0] == new_key.kid and len(kids) >= 2
    assert all(k["kty"] == "RSA" and k["alg"] == "RS256" and "d" not in k for k in jwks["keys"])

    # A process that has not seen the new key yet picks it up on first sight (throttled reload).
    ring = KeyRing()
    ring.load({"keys": [k for k in jwks["keys"] if k["kid"] != new_key.kid]})
    ring.loaded_at -= 60
    claims = await keys.verify_access_token_refreshing(new["access_token"], world.app.state.sessionmaker, ring)
    assert claims.client_id == created["client_id"]
    assert verify_access_token(old["access_token"], ring=ring).client_id == created["client_id"]


async def test_retired_keys_leave_the_key_set_once_their_tokens_have_expired(world: World) -> None:
    async with world.app.state.sessionmaker.begin() as session:
        await keys.rotate_signing_key(session)
        retired = (await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_not(None)))).all()
        ttl = timedelta(seconds=get_settings().oauth_access_token_ttl)
        assert retired and all(k.expires_at and k.expires_at >= k.retired_at + ttl for k in retired)
        await session.execute(update(SigningKey).where(SigningKey.retired_at.is_not(None))
                              .values(expires_at=utcnow() - timedelta(seconds=1)))
        assert len((await keys.public_jwks(session))["keys"]) == 1
        assert await keys.purge_expired_keys(session) >= 1
    await keys.refresh_key_ring(world.app.state.sessionmaker)


async def test_private_keys_are_encrypted_at_rest(world: World) -> None:
    async with world.app.state.sessionmaker() as session:
        row = await keys.ensure_signing_key(session)
        assert "PRIVATE KEY" not in row.private_key_encrypted


async def test_the_housekeeping_jobs_rotate_when_due_and_purge(world: World) -> None:
    from oauth import tasks

    ctx = {"sessionmaker": world.app.state.sessionmaker}
    assert await tasks.rotate_signing_key_if_due(ctx) is None  # the active key is young
    async with world.app.state.sessionmaker.begin() as session:
        await session.execute(update(SigningKey).where(SigningKey.retired_at.is_(None))
                              .values(created_at=utcnow() - timedelta(days=get_settings().oauth_key_rotation_days + 1)))
    assert await tasks.rotate_signing_key_if_due(ctx)
    await keys.refresh_key_ring(world.app.state.sessionmaker)
    assert await tasks.purge_dead_oauth_rows(ctx) >= 0
