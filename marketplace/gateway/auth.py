"""The gateway's authentication step: who is calling, on which subscription and plan.

Two ways in, one result (a `Caller`):
- `X-API-Key: mk_…` → SHA-256 → cached key record (`GatewayCache.caller`).
- `Authorization: Bearer <jwt>` → `authenticate_bearer`: an OAuth access token (RFC 9068),
  verified locally (`oauth.tokens.verify_access_token`), then the consumer's live subscription to
  the API, like the key path (`cache.caller_for(subscription, plan_version, None)`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from marketplace.core.security import hash_token
from marketplace.gateway.records import ApiEntry, Caller
from oauth.keys import verify_access_token_refreshing
from oauth.tokens import VERIFIED_TOKENS, ExpiredToken, TokenError, UnknownKey, verify_access_token

if TYPE_CHECKING:
    from marketplace.gateway.cache import GatewayCache


class GatewayProblem(Exception):
    """A refusal on the hot path, answered as problem+json (never billed)."""

    api: ApiEntry | None = None  # set once the API is known (for the statistics)

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
            return await authenticate_bearer(request, token.strip(), cache, now, mono)
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


def bearer_unauthorized(detail: str, error: str = "invalid_token") -> GatewayProblem:
    # RFC 6750 §3: the challenge names the error; the problem body says what to do.
    return GatewayProblem(401, "Unauthorized", detail, "invalid-token",
                          headers=[(b"www-authenticate", f'Bearer error="{error}"'.encode())])


async def authenticate_bearer(request: ParsedRequest, token: str, cache: GatewayCache, now: float,
                              mono: float) -> Caller:
    """OAuth access tokens: a JWT verified locally against the cached key set (no database once
    warm), then the consumer's live subscription to this API (cached like key records). The call's
    caller is a copy whose scopes are the token's scopes that the plan grants; the token's jti
    travels with it so that admit.lua refuses a revoked token in the same Redis round trip."""
    if len(token) > 4096:
        raise bearer_unauthorized("The access token is too long to be one of ours.")
    claims = VERIFIED_TOKENS.get(token, now)  # the warm path: this token was verified before
    if claims is None:
        try:
            try:
                claims = verify_access_token(token, now=now)
            except UnknownKey:  # a key rotated in by another process: reload the key set (throttled)
                claims = await verify_access_token_refreshing(token, cache.sessionmaker)
        except ExpiredToken:
            raise bearer_unauthorized("The access token has expired. Refresh it (grant_type=refresh_token at "
                                      "/oauth/token) or authorize the app again.") from None
        except TokenError as exc:
            raise bearer_unauthorized(f"Invalid access token: {exc} Get one from /oauth/token.") from None
        VERIFIED_TOKENS.put(token, claims)
    hit = cache.callers.entries.get(f"{claims.sub}:{request.api.id}")  # the warm path, without a coroutine
    caller = hit[0] if hit is not None and hit[1] > mono else await cache.consumer_caller(claims.sub, request.api.id,
                                                                                         mono)
    if caller is None:
        raise GatewayProblem(403, "No subscription", f"The user of this access token has no live subscription "
                             f"to {request.api.slug}. Subscribe with POST /v1/subscriptions.", "no-subscription")
    scopes = caller.scopes & claims.scopes
    if not scopes:
        # The user never let this app near this API: refuse even endpoints that need no scope.
        raise GatewayProblem(403, "Insufficient scope", f"This access token grants no scope of {request.api.slug} "
                             f"(it carries: {' '.join(sorted(claims.scopes))}). Authorize the app with a scope "
                             "of this API.", "insufficient-scope",
                             headers=[(b"www-authenticate", b'Bearer error="insufficient_scope"')])
    return replace(caller, scopes=scopes, token_jti=claims.jti, client_id=claims.client_id)
