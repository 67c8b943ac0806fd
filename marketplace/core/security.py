"""Secrets and identity: password hashing, opaque tokens, encryption at rest, the caller.

- Passwords: argon2id (argon2-cffi).
- Opaque tokens (personal access tokens, API keys, client secrets): 32 random bytes, shown once,
  stored as SHA-256 (they are high-entropy, so a fast hash is safe) with a short public prefix
  for lookup.
- Secrets we must use again (webhook signing secrets, proxy secrets): Fernet, keyed from settings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet

from marketplace.settings import get_settings

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash of a throwaway password, verified when the email is unknown so that login takes the
# same time whether or not the account exists.
DUMMY_PASSWORD_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class OpaqueToken:
    value: str  # shown to the user once
    prefix: str  # stored in clear, for lookup and display
    hash: str  # stored


def new_token(kind: str, prefix_len: int = 8) -> OpaqueToken:
    """`{kind}_{prefix}{secret}`; the lookup prefix is the first characters after the kind."""
    body = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    value = f"{kind}_{body}"
    return OpaqueToken(value=value, prefix=value[: len(kind) + 1 + prefix_len], hash=hash_token(value))


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def token_prefix(value: str, kind: str, prefix_len: int = 8) -> str:
    return value[: len(kind) + 1 + prefix_len]


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@lru_cache
def _fernet() -> Fernet:
    settings = get_settings()
    if settings.secret_key:
        key = settings.secret_key.encode()
    else:
        # Development default: stable per data directory, never used when a key is configured.
        digest = hashlib.sha256(b"marketplace-dev-key:" + str(settings.data_dir.resolve()).encode()).digest()
        key = base64.urlsafe_b64encode(digest)
    return Fernet(key)


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a management endpoint."""

    user_id: str
    email: str
    is_operator: bool = False
    # None: a personal access token or session, which may do anything the user may.
    # A set: an OAuth access token, limited to these scopes.
    scopes: frozenset[str] | None = field(default=None)


def csrf_token(session_token: str) -> str:
    """A synchronizer token bound to the browser session: put it in a hidden form field."""
    key = hashlib.sha256(b"csrf:" + _fernet_key_material()).digest()
    return hmac.new(key, session_token.encode(), hashlib.sha256).hexdigest()


def check_csrf(session_token: str, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(csrf_token(session_token), submitted or "")


def _fernet_key_material() -> bytes:
    settings = get_settings()
    return (settings.secret_key or str(settings.data_dir.resolve())).encode()
