"""RFC 9457 problem details: one exception family, each member carrying its HTTP status.

Services raise these; handlers turn them (and Litestar's own errors) into
`application/problem+json` whose detail says what to do next.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.exceptions import NotFoundException as LitestarNotFound
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError, IntegrityError

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://docs.marketplace.dev/problems/"


class Problem(Exception):
    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
        slug: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra
        if title:
            self.title = title
        if slug:
            self.slug = slug

    def body(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(
            self.status, self.title, self.detail, self.slug, errors=self.errors,
            instance=instance, **self.extra,
        )


class BadRequest(Problem):
    pass


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class PaymentRequired(Problem):
    status, title, slug = 402, "Payment required", "payment-required"


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class Unprocessable(Problem):
    status, title, slug = 422, "Unprocessable content", "unprocessable"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too many requests", "rate-limited"


class BadGateway(Problem):
    status, title, slug = 502, "Bad gateway", "bad-gateway"


class ServiceUnavailable(Problem):
    status, title, slug = 503, "Service unavailable", "unavailable"


class GatewayTimeout(Problem):
    status, title, slug = 504, "Gateway timeout", "gateway-timeout"


def problem_body(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(content=body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def _problem_handler(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(exc.body(request.url.path), exc.headers)


_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`")


def _field_errors(extra: Any) -> list[dict[str, Any]]:
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            field = item.get("key") or item.get("source") or "body"
            message = item.get("message", "")
            # msgspec reports a missing field at its parent object ("data" for the body): name the field.
            missing = _MISSING_FIELD.match(message)
            if missing:
                field = missing[1] if field in ("data", "body") else f"{field}.{missing[1]}"
            errors.append({"field": field, "message": message})
    return errors


def _http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra)
        detail = exc.detail or "The request is not valid."
        if errors:
            fields = ", ".join(e["field"] for e in errors)
            detail = f"Fix these fields and send the request again: {fields}."
        elif "JSON" in (exc.detail or "") or "decode" in (exc.detail or "").lower():
            detail = "The body is not valid JSON. Send a JSON object with Content-Type: application/json."
        body = problem_body(422 if errors else 400, "Invalid request", detail,
                            "validation-error", errors=errors, instance=request.url.path)
        return problem_response(body)
    if isinstance(exc, NotAuthorizedException):
        body = problem_body(401, "Unauthorized", exc.detail or "Authentication required.", "unauthorized",
                            instance=request.url.path)
        return problem_response(body, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, LitestarNotFound):
        body = problem_body(404, "Not found", f"No route for {request.method} {request.url.path}. "
                            "See /docs for the API reference.", "not-found", instance=request.url.path)
        return problem_response(body)
    if status == 405:
        body = problem_body(405, "Method not allowed", f"{request.method} is not allowed on {request.url.path}.",
                            "method-not-allowed", instance=request.url.path)
        return problem_response(body, exc.headers)
    if status >= 500:
        return _unexpected_handler(request, exc)
    body = problem_body(status, "Request error", exc.detail or "The request could not be processed.",
                        "request-error", instance=request.url.path)
    return problem_response(body, exc.headers)


def _unexpected_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    import structlog

    structlog.get_logger("marketplace").exception("unhandled_error", path=request.url.path)
    body = problem_body(HTTP_500_INTERNAL_SERVER_ERROR, "Internal error",
                        "Something went wrong on our side. Retry later; if it persists, contact support "
                        "with the X-Request-Id of this response.", "internal", instance=request.url.path)
    return problem_response(body)


def _integrity_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # Services check what they can; a constraint that still fires (a race between two requests)
    # is a conflict with existing data, not a server error.
    body = problem_body(409, "Conflict", "This conflicts with existing data (a duplicate or a reference that "
                        "no longer exists). Reload and try again.", "conflict", instance=request.url.path)
    return problem_response(body)


def _dbapi_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # SQLSTATE class 22 is "data exception": a value the client sent that PostgreSQL cannot store
    # or compare (a NUL character in text, a number out of range, an impossible date). Bad input,
    # not a server error.
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    if not sqlstate.startswith("22"):
        return _unexpected_handler(request, exc)
    body = problem_body(422, "Invalid value", "A value in the request cannot be stored: text must not contain NUL "
                        "characters (\\u0000) and numbers must fit in 64 bits. Fix the value and send the request "
                        "again.", "invalid-value", instance=request.url.path)
    return problem_response(body)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    IntegrityError: _integrity_handler,
    DBAPIError: _dbapi_handler,
    Problem: _problem_handler,
    HTTPException: _http_exception_handler,
    Exception: _unexpected_handler,
}
