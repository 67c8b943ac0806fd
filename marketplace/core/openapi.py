"""The OpenAPI document says what errors really look like: RFC 9457 problem+json.

Litestar documents a 400 with its own `{status_code, detail, extra}` shape, which is not what the
exception handlers (`core.errors`) send. At startup, every operation under /v1 gets its error
responses rewritten to the `Problem` schema, with an example each.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi.spec import Example, OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from marketplace.core.errors import PROBLEM_JSON, TYPE_BASE

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="An RFC 9457 problem: what went wrong and what to do about it.",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, format=None, description="A URI naming the kind of problem"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="What happened and what to do"),
        "instance": Schema(type=OpenAPIType.STRING),
        "errors": Schema(type=OpenAPIType.ARRAY, description="Field problems", items=Schema(
            type=OpenAPIType.OBJECT, properties={"field": Schema(type=OpenAPIType.STRING),
                                                 "message": Schema(type=OpenAPIType.STRING)})),
    },
)

PUBLIC_PREFIXES = ("/v1/catalog/", "/v1/signup", "/v1/login", "/v1/stripe/")

# (status, title, slug, detail) of the errors every authenticated /v1 operation can answer.
_COMMON = {
    "400": ("Invalid request", "validation-error", "The body is not valid JSON. Send a JSON object with "
            "Content-Type: application/json."),
    "401": ("Unauthorized", "unauthorized", "Missing bearer token. Send Authorization: Bearer <token>; "
            "get one from POST /v1/login."),
    "404": ("Not found", "not-found", "No such object among yours. List them with the matching GET endpoint."),
    "422": ("Invalid request", "validation-error", "Fix these fields and send the request again: name."),
}


def _problem_response(status: str, title: str, slug: str, detail: str) -> OpenAPIResponse:
    example: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": int(status), "detail": detail}
    if status == "422":
        example["errors"] = [{"field": "name", "message": "Expected `str` of length >= 1"}]
    return OpenAPIResponse(description=title, content={PROBLEM_JSON: OpenAPIMediaType(
        schema=Reference(ref="#/components/schemas/Problem"), examples={slug: Example(value=example)})})


def document_problems(app: Litestar) -> None:
    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    openapi.components.schemas["Problem"] = PROBLEM_SCHEMA
    for path, item in (openapi.paths or {}).items():
        if not path.startswith("/v1/"):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            public = path.startswith(PUBLIC_PREFIXES)  # no bearer token needed: no 401
            for status, (title, slug, detail) in _COMMON.items():
                if (status == "401" and public) or (status == "404" and "{" not in path):
                    continue
                if status in ("400", "422") and method in ("get", "delete") and status not in responses:
                    continue
                responses[status] = _problem_response(status, title, slug, detail)
            for status in [s for s in responses if s.startswith(("4", "5")) and s not in _COMMON]:
                response = responses[status]
                if isinstance(response, OpenAPIResponse):
                    responses[status] = _problem_response(status, response.description or "Error", "error",
                                                          response.description or "See the detail.")
            operation.responses = responses
