"""The gateway's authentication step: who is calling, on which subscription and plan.

Two ways in, one result (a `Caller`):
- `X-API-Key: mk_…` → SHA-256 → cached key record (`GatewayCache.caller`).
- `Authorization: Bearer <jwt>` → `authenticate_bearer` below: THE HOOK FOR THE OAUTH ISSUE. It
  receives the already-parsed request and must return the same `Caller` the key path produces
  (see `cache.caller_for(subscription, plan_version, None)`), or raise `GatewayProblem(401, …)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from marketplace.core.security import hash_token
from marketplace.gateway.records import ApiEntry, Caller

if TYPE_CHECKING:
    from marketplace.gateway.cache import GatewayCache


class GatewayProblem(Exception):
    """A refusal on the hot path, answered as problem+json (never billed)."""

    def __init__(self, status: int, title: str, detail: str, slug: str,
                 headers: list[tuple[bytes, bytes]] | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.slug = status, title, detail, slug
        self.headers = headers or []
        self.extra = extra


@dataclass(slots=True)
class ParsedRequest:
    """What the gateway has read from the ASGI scope before authenticating."""

    method: str
    path: str  # below the API slug, still percent-encoded
    query: bytes
    api: ApiEntry
    api_key: str | None
    authorization: str | None
    client_ip: str


def unauthorized(detail: str) -> GatewayProblem:
    return GatewayProblem(401, "Unauthorized", detail, "unauthorized",
                          headers=[(b"www-authenticate", b'ApiKey header="X-API-Key"')])


async def authenticate(request: ParsedRequest, cache: GatewayCache, now: float, mono: float) -> Caller:
    if request.api_key is not None:
        return await authenticate_key(request, cache, now, mono)
    if request.authorization:
        scheme, _, token = request.authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return await authenticate_bearer(request, token.strip())
    raise unauthorized("Missing API key. Send it in the X-API-Key header; create one with POST /v1/api-keys.")


async def authenticate_key(request: ParsedRequest, cache: GatewayCache, now: float, mono: float) -> Caller:
    raw = request.api_key or ""
    if not (8 < len(raw) <= 200):
        raise unauthorized("Invalid API key. Create one with POST /v1/api-keys.")
    key_hash = hash_token(raw)
    hit = cache.callers.entries.get(key_hash)  # the warm path, without a coroutine
    caller = hit[0] if hit is not None and hit[1] > mono else await cache.caller(key_hash, mono)
    if caller is None:
        raise unauthorized("Invalid API key. Create one with POST /v1/api-keys.")
    if caller.revoked:
        raise unauthorized("This API key was revoked. Create a new one with POST /v1/api-keys.")
    if caller.expires_at is not None and caller.expires_at <= now:
        raise unauthorized("This API key expired after being rotated. Use the new key, or create one with "
                           "POST /v1/api-keys.")
    return caller


async def authenticate_bearer(request: ParsedRequest, token: str) -> Caller:
    """OAuth access tokens (JWT, verified locally against our JWKS): filled by the OAuth issue.

    Contract: verify the token, find the consumer's live subscription to `request.api.id`, and
    return `caller_for(subscription, plan_version, None)` (cached like key records); scopes on the
    token must be intersected with the plan's (`Caller.scopes`).
    """
    raise unauthorized("Bearer tokens are not accepted yet; use X-API-Key.")
