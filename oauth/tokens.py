"""Access-token JWTs (RFC 9068): signing, and DB-free verification for the gateway's hot path.

`verify_access_token(token)` checks a token against a process-local key ring (the public keys
of our JWKS), with no database or network call: header (`alg` exactly RS256, `typ` at+jwt, a
known `kid`), RSA signature, then `iss`, `aud`, `exp`/`nbf`. Every refusal is a `TokenError`
subclass naming why. The ring is filled from the database at start-up and refreshed (throttled)
when a token names an unknown `kid` (see `oauth.keys.refresh_key_ring`), so a rotated key is
picked up without a restart.

Revoked tokens: the gateway also checks `deny_list_key(jti)` in Redis (set by revocation with a
TTL of the token's remaining lifetime); that lookup belongs in its single Redis round trip.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from marketplace.core.redis import key
from marketplace.settings import get_settings

ALG = "RS256"
TYP = "at+jwt"
LEEWAY = 5  # seconds of clock skew tolerated on exp/nbf/iat
DENY_LIST = "jti-deny"


def deny_list_key(jti: str) -> str:
    """The Redis key that marks a revoked access token (exists = refused)."""
    return key(DENY_LIST, jti)


class TokenError(Exception):
    """An access token was refused. `reason` is a stable code, `str(exc)` says why."""

    reason = "invalid_token"


class MalformedToken(TokenError):
    reason = "malformed"


class UnsupportedAlgorithm(TokenError):
    reason = "unsupported_alg"


class WrongTokenType(TokenError):
    reason = "wrong_typ"


class UnknownKey(TokenError):
    reason = "unknown_kid"


class BadSignature(TokenError):
    reason = "bad_signature"


class ExpiredToken(TokenError):
    reason = "expired"


class WrongClaims(TokenError):
    reason = "wrong_claims"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str  # the consumer (user id) the token acts for
    client_id: str  # the app (app_…)
    scopes: frozenset[str]
    jti: str
    iat: int
    exp: int
    iss: str
    aud: str | list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _int_from_b64(value: str) -> int:
    return int.from_bytes(_b64url_decode(value), "big")


def public_key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(_int_from_b64(jwk["e"]), _int_from_b64(jwk["n"])).public_key()


class VerifiedTokens:
    """Tokens this process has already verified (signature and claims), with their claims, until
    they expire: a repeat call with the same token costs a dict lookup instead of an RSA check.
    Revocation is unaffected (the deny-list is checked per call); a key leaving the key set clears
    the cache, so tokens it signed are verified, and refused, again."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.entries: dict[str, AccessClaims] = {}
        self.max_entries = max_entries

    def get(self, token: str, now: float) -> AccessClaims | None:
        claims = self.entries.get(token)
        if claims is not None and claims.exp + LEEWAY >= now:
            return claims
        return None

    def put(self, token: str, claims: AccessClaims) -> None:
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[token] = claims

    def clear(self) -> None:
        self.entries.clear()


VERIFIED_TOKENS = VerifiedTokens()


class KeyRing:
    """Process-local public keys by kid. Replaced wholesale on refresh (no partial states)."""

    def __init__(self, verified: VerifiedTokens | None = None) -> None:
        self.keys: dict[str, rsa.RSAPublicKey] = {}
        self.loaded_at = 0.0
        self.verified = verified

    def load(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("alg", ALG) == ALG and jwk.get("kid"):
                keys[jwk["kid"]] = public_key_from_jwk(jwk)
        if self.verified is not None and set(self.keys) - set(keys):
            self.verified.clear()
        self.keys = keys
        self.loaded_at = time.monotonic()


KEY_RING = KeyRing(VERIFIED_TOKENS)
_header_decoder = msgspec.json.Decoder(dict[str, Any])


def sign_access_token(claims: dict[str, Any], private_key: rsa.RSAPrivateKey, kid: str) -> str:
    header = {"alg": ALG, "typ": TYP, "kid": kid}
    signing_input = b64url(msgspec.json.encode(header)) + "." + b64url(msgspec.json.encode(claims))
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def verify_access_token(token: str, *, ring: KeyRing | None = None, now: float | None = None,
                        audience: str | None = None, issuer: str | None = None) -> AccessClaims:
    """Verify an access token locally; raise a `TokenError` subclass if it must be refused."""
    ring = ring or KEY_RING
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("Not a JWS compact token (expected three dot-separated parts).")
    try:
        header = _header_decoder.decode(_b64url_decode(parts[0]))
    except (ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise MalformedToken("The token header is not base64url JSON.") from exc
    alg = header.get("alg")
    if alg != ALG:  # refuses "none", HS256 (key confusion) and anything else
        raise UnsupportedAlgorithm(f"Algorithm {alg!r} is not accepted; tokens are signed {ALG}.")
    if header.get("typ") != TYP:
        raise WrongTokenType(f"Token type {header.get('typ')!r} is not an access token ({TYP}).")
    kid = header.get("kid")
    public_key = ring.keys.get(kid) if isinstance(kid, str) else None
    if public_key is None:
        raise UnknownKey(f"No signing key {kid!r} in the key set.")
    try:
        signature = _b64url_decode(parts[2])
        public_key.verify(signature, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
    except (_CryptoInvalidSignature, ValueError, binascii.Error) as exc:
        raise BadSignature("The token signature does not verify.") from exc
    try:
        claims = _header_decoder.decode(_b64url_decode(parts[1]))
    except (ValueError, binascii.Error, msgspec.DecodeError) as exc:
        raise MalformedToken("The token claims are not base64url JSON.") from exc
    return _check_claims(claims, now=now, audience=audience, issuer=issuer)


def _check_claims(claims: dict[str, Any], *, now: float | None, audience: str | None,
                  issuer: str | None) -> AccessClaims:
    now = time.time() if now is None else now
    settings = get_settings()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise WrongClaims("The token lacks numeric exp/iat claims.")
    if exp + LEEWAY < now:
        raise ExpiredToken("The access token has expired; refresh it or authorize again.")
    nbf = claims.get("nbf")
    if isinstance(nbf, int) and nbf - LEEWAY > now:
        raise WrongClaims("The token is not valid yet.")
    if claims.get("iss") != (issuer or settings.oauth_issuer):
        raise WrongClaims("The token was issued by another server.")
    aud = claims.get("aud")
    want = audience or settings.oauth_token_audience
    if not (aud == want or (isinstance(aud, list) and want in aud)):
        raise WrongClaims("The token is meant for another audience.")
    sub, client_id, jti, scope = claims.get("sub"), claims.get("client_id"), claims.get("jti"), claims.get("scope")
    if not (isinstance(sub, str) and isinstance(client_id, str) and isinstance(jti, str) and isinstance(scope, str)):
        raise WrongClaims("The token lacks sub, client_id, jti or scope.")
    return AccessClaims(sub=sub, client_id=client_id, scopes=frozenset(scope.split()), jti=jti, iat=iat, exp=exp,
                        iss=claims["iss"], aud=aud, raw=claims)
