"""The JWT signing key set: stored in the database (private half encrypted with
`core.security.encrypt`), published at the jwks_uri, rotated by `rotate_signing_key`.

Rotation keeps old public keys: a retired key stops signing at once but stays in the JWKS until
every token it signed has expired (`expires_at` = retirement + access-token lifetime + a margin),
then the daily job deletes it. RS256 (RSA-2048): verification, which the gateway does on every
call, is several times cheaper than ES256's; signing happens once per token.
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import anyio
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from marketplace.core.cache import invalidate_after_commit
from marketplace.core.db import utcnow
from marketplace.core.security import decrypt, encrypt
from marketplace.settings import get_settings
from oauth.models import SigningKey
from oauth.tokens import ALG, KEY_RING, KeyRing, TokenError, UnknownKey, b64url, verify_access_token

RETIRE_MARGIN = timedelta(seconds=120)
REFRESH_THROTTLE = 5.0  # seconds between key-ring reloads triggered by unknown kids
_LOCK = "select pg_advisory_xact_lock(hashtext('oauth-signing-keys'))"
_private_cache: dict[str, rsa.RSAPrivateKey] = {}


def _new_key_row() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    n = b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
    e = b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
    # RFC 7638 thumbprint as the kid.
    kid = b64url(hashlib.sha256(msgspec.json.encode({"e": e, "kty": "RSA", "n": n})).digest())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    _private_cache[kid] = private
    return SigningKey(kid=kid, alg=ALG, public_jwk={"kty": "RSA", "use": "sig", "alg": ALG, "kid": kid, "n": n, "e": e},
                      private_key_encrypted=encrypt(pem), created_at=utcnow())


async def _active(session: AsyncSession) -> SigningKey | None:
    return await session.scalar(select(SigningKey).where(SigningKey.retired_at.is_(None))
                                .order_by(SigningKey.created_at.desc()).limit(1))


async def ensure_signing_key(session: AsyncSession) -> SigningKey:
    """The active signing key, created if there is none (safe when several processes start at once)."""
    key = await _active(session)
    if key is not None:
        return key
    await session.execute(text(_LOCK))
    key = await _active(session)
    if key is None:
        key = await anyio.to_thread.run_sync(_new_key_row)  # RSA generation is CPU work: off the loop
        session.add(key)
        await session.flush()
    return key


async def rotate_signing_key(session: AsyncSession) -> SigningKey:
    """Make a new signing key; older ones stop signing and stay published until their tokens expire."""
    await session.execute(text(_LOCK))
    now = utcnow()
    ttl = timedelta(seconds=get_settings().oauth_access_token_ttl)
    await session.execute(update(SigningKey).where(SigningKey.retired_at.is_(None))
                          .values(retired_at=now, expires_at=now + ttl + RETIRE_MARGIN))
    key = await anyio.to_thread.run_sync(_new_key_row)
    session.add(key)
    await session.flush()
    invalidate_after_commit(session, "jwks", "rotated")
    return key


async def rotate_if_due(session: AsyncSession) -> SigningKey | None:
    key = await _active(session)
    if key is None:
        return await ensure_signing_key(session)
    if utcnow() - key.created_at >= timedelta(days=get_settings().oauth_key_rotation_days):
        return await rotate_signing_key(session)
    return None


async def purge_expired_keys(session: AsyncSession) -> int:
    result = await session.execute(delete(SigningKey).where(SigningKey.expires_at < utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def public_jwks(session: AsyncSession) -> dict[str, Any]:
    rows = await session.scalars(select(SigningKey).where(or_(SigningKey.expires_at.is_(None),
                                                              SigningKey.expires_at > utcnow()))
                                 .order_by(SigningKey.created_at.desc()))
    return {"keys": [row.public_jwk for row in rows]}


def active_private_key(session: Session) -> tuple[str, rsa.RSAPrivateKey]:
    """For the token generator (sync, inside `AsyncSession.run_sync`): the kid and key that sign now."""
    row = session.scalar(select(SigningKey).where(SigningKey.retired_at.is_(None))
                         .order_by(SigningKey.created_at.desc()).limit(1))
    if row is None:
        row = _new_key_row()  # only if start-up did not create one (ensure_signing_key)
        session.add(row)
        session.flush()
    private = _private_cache.get(row.kid)
    if private is None:
        loaded = serialization.load_pem_private_key(decrypt(row.private_key_encrypted).encode(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        private = _private_cache[row.kid] = loaded
    return row.kid, private


async def refresh_key_ring(sessionmaker: async_sessionmaker[AsyncSession], ring: KeyRing | None = None) -> None:
    async with sessionmaker() as session:
        (ring or KEY_RING).load(await public_jwks(session))


async def verify_access_token_refreshing(token: str, sessionmaker: async_sessionmaker[AsyncSession],
                                         ring: KeyRing | None = None) -> Any:
    """`verify_access_token`, reloading the key ring once (at most every few seconds per process)
    when the token names a kid this process has not seen yet, e.g. just after a rotation."""
    ring = ring or KEY_RING
    try:
        return verify_access_token(token, ring=ring)
    except UnknownKey:
        if time.monotonic() - ring.loaded_at < REFRESH_THROTTLE:
            raise
        await refresh_key_ring(sessionmaker, ring)
        return verify_access_token(token, ring=ring)


__all__ = ["TokenError", "ensure_signing_key", "public_jwks", "rotate_signing_key", "verify_access_token_refreshing"]
