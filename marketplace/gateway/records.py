"""What the gateway caches per process: the API (by slug) and the caller (by key hash).

Plain slotted classes, built once from PostgreSQL and then read on every call without I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


@dataclass(slots=True)
class EndpointEntry:
    id: str
    method: str
    path: str  # the template
    scope: str | None
    weight: int


@dataclass(slots=True)
class PlanOffer:
    """Another plan of the same API, for the "how to raise this limit" part of a 429."""

    id: str
    name: str
    per_second: int | None
    per_minute: int | None
    quota: int | None


class EndpointMatcher:
    """Method + path template matching, compiled once per API: exact paths by dict lookup,
    templates by one regex each (in declaration order, literal paths first)."""

    __slots__ = ("exact", "patterns")

    def __init__(self, endpoints: list[EndpointEntry]) -> None:
        self.exact: dict[tuple[str, str], EndpointEntry] = {}
        self.patterns: list[tuple[re.Pattern[str], EndpointEntry]] = []
        for ep in endpoints:
            template = ep.path if ep.path.startswith("/") else "/" + ep.path
            if len(template) > 1:
                template = template.rstrip("/")
            if "{" not in template:
                self.exact[(ep.method, template)] = ep
                continue
            regex, pos = [], 0
            for m in _PARAM.finditer(template):
                regex.append(re.escape(template[pos:m.start()]))
                regex.append("(.+)" if m.group(2) else "([^/]+)")
                pos = m.end()
            regex.append(re.escape(template[pos:]))
            self.patterns.append((re.compile("^" + "".join(regex) + "$"), ep))

    def match(self, method: str, path: str) -> tuple[EndpointEntry | None, list[str]]:
        """(the endpoint, []) or (None, methods allowed on this path: empty means no such path)."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        ep = self.exact.get((method, path))
        if ep is not None:
            return ep, []
        if method == "HEAD" and (ep := self.exact.get(("GET", path))) is not None:
            return ep, []
        allowed: list[str] = []
        for m, p in self.exact:
            if p == path:
                allowed.append(m)
        for pattern, candidate in self.patterns:
            if pattern.match(path):
                if candidate.method == method or (method == "HEAD" and candidate.method == "GET"):
                    return candidate, []
                allowed.append(candidate.method)
        return None, allowed


@dataclass(slots=True)
class ApiEntry:
    id: str
    slug: str
    partner_id: str
    status: str
    upstream: str  # base URL without a trailing slash
    proxy_secret: str  # decrypted once, here
    matcher: EndpointMatcher
    plans: list[PlanOffer] = field(default_factory=list)
    origin: Any = None  # upstream.Origin of `upstream`, parsed once (None: not a usable URL)
    proxy_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # constant per API, pre-encoded


@dataclass(slots=True)
class Caller:
    """Who is calling and on what terms: what the key path (and, later, the bearer path) produces."""

    key_id: str | None
    consumer_id: str
    subscription_id: str
    api_id: str
    status: str  # the subscription's
    plan_id: str
    plan_name: str
    scopes: frozenset[str]
    per_second: int
    per_minute: int
    quota: int  # -1: none
    quota_hard: bool
    anchor: float  # subscription start (epoch seconds): periods are anchored on it
    period_start: float
    period_end: float
    revoked: bool = False
    expires_at: float | None = None  # rotated keys keep working until then
    policy_header: str = ""
    # Set on the per-call copy the bearer path makes: the access token's jti (checked against the
    # deny-list in admit.lua) and the app it was issued to.
    token_jti: str | None = None
    client_id: str | None = None
    # X-Marketplace-Consumer / -Subscription for the upstream request, encoded once.
    proxy_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # The admit.lua call's constant parts, RESP-encoded, by (endpoint id, period, script sha): key path only.
    admit_parts: dict[tuple[str, str, str], tuple[bytes, bytes]] = field(default_factory=dict)
