"""Guards on the caller (`Principal`). The principal itself is resolved by the accounts domain and
injected as the `principal` dependency; domains only ask questions of it here."""

from __future__ import annotations

from marketplace.core.errors import Forbidden, NotFound
from marketplace.core.security import Principal

SESSION_COOKIE = "mkt_session"


def require_operator(principal: Principal) -> None:
    # Non-operators must not learn that admin paths exist: 404, not 403.
    if not principal.is_operator:
        raise NotFound("Not found.")


def require_scope(principal: Principal, scope: str) -> None:
    """OAuth access tokens act only within their scopes; personal tokens are unrestricted."""
    if principal.scopes is not None and scope not in principal.scopes:
        raise Forbidden(f"This access token lacks the scope {scope!r}. Request it when authorizing the app.")
