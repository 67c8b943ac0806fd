"""API publishing over HTTP: thin controllers over `service`, `plans` and `openapi_import`.

Every route acts for a partner the caller is a member of (any role); anything else is 404.
JSON bodies are decoded strictly (see `strict_body`): `"4900"` or `49.5` for an integer is a 422.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.openapi.spec import Example, Operation, RequestBody, Schema
from litestar.openapi.spec import OpenAPIMediaType as MediaTypeSpec
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.auth import require_operator
from marketplace.core.errors import Unprocessable
from marketplace.core.pagination import Page
from marketplace.core.security import Principal
from partners.publishing import openapi_import, plans, service
from partners.publishing.models import Api, Endpoint, Plan, PlanVersion, Scope
from partners.publishing.schemas import (
    ApiIn,
    ApiOut,
    ApiPatch,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    ImportCreatedOut,
    ImportOut,
    PlanIn,
    PlanOut,
    PlanPatch,
    ProxySecretOut,
    Quota,
    RateLimit,
    ScopeIn,
    ScopeOut,
    SkippedOut,
    SuspendIn,
)

T = TypeVar("T")
_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>.*)`$", re.DOTALL)

Limit = Annotated[int | None, Parameter(ge=1, le=100, description="Page size (default 20, at most 100).")]
StartingAfter = Annotated[str | None, Parameter(description="The last id of the previous page (its next_cursor).")]


async def strict_body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """Decode the JSON body strictly. Litestar's own decoding is lax (it turns "49" and 49.0 into 49);
    money and counts must be JSON integers, so every input is decoded again without coercion."""
    try:
        return msgspec.json.decode(await request.body(), type=type_, strict=True)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        field, message = (match["path"].lstrip(".") or "body", match["message"]) if match else ("body", str(exc))
        raise Unprocessable(f"Fix these fields and send the request again: {field}.",
                            errors=[{"field": field, "message": message}], title="Invalid request",
                            slug="validation-error") from None
    except msgspec.DecodeError:
        raise Unprocessable("The body is not valid JSON. Send a JSON object with Content-Type: application/json.",
                            title="Invalid request", slug="validation-error") from None


IMPORT_EXAMPLE = {
    "openapi": "3.1.0", "info": {"title": "Acme Weather", "version": "1.0"},
    "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {"clientCredentials": {
        "tokenUrl": "https://auth.acme-weather.example/token", "scopes": {"weather:read": "Read forecasts"}}}}}},
    "paths": {"/forecast/{city}": {"get": {"summary": "Forecast for a city", "x-marketplace-weight": 1,
                                           "security": [{"oauth": ["weather:read"]}]}}},
}


class OpenApiDocumentOperation(Operation):
    """The import's body is a raw document (JSON or YAML), which no struct describes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_body = RequestBody(required=True, description="An OpenAPI 3 document", content={
            "application/json": MediaTypeSpec(schema=Schema(type=OpenAPIType.OBJECT),
                                              examples={"weather": Example(value=IMPORT_EXAMPLE)}),
            "application/yaml": MediaTypeSpec(schema=Schema(type=OpenAPIType.STRING)),
        })


def api_out(api: Api) -> ApiOut:
    return ApiOut(id=api.id, partner_id=api.partner_id, slug=api.slug, name=api.name, description=api.description,
                  upstream_url=api.upstream_url, category=api.category, tags=list(api.tags or []),
                  status=api.status, revision=api.revision, published_at=api.published_at,  # type: ignore[arg-type]
                  created_at=api.created_at, updated_at=api.updated_at, gateway_path=f"/gateway/{api.slug}")


def scope_out(scope: Scope) -> ScopeOut:
    return ScopeOut(id=scope.id, api_id=scope.api_id, name=scope.name, description=scope.description,
                    created_at=scope.created_at)


def endpoint_out(endpoint: Endpoint) -> EndpointOut:
    return EndpointOut(id=endpoint.id, api_id=endpoint.api_id, method=endpoint.method, path=endpoint.path,
                       scope=endpoint.scope, weight=endpoint.weight, description=endpoint.description,
                       created_at=endpoint.created_at)


def plan_out(plan: Plan, version: PlanVersion) -> PlanOut:
    quota = Quota(limit=version.quota_limit, hard=version.quota_hard) if version.quota_limit is not None else None
    rate = (RateLimit(per_second=version.rate_per_second, per_minute=version.rate_per_minute)
            if version.rate_per_second is not None or version.rate_per_minute is not None else None)
    return PlanOut(id=plan.id, api_id=plan.api_id, status=plan.status, version=version.version,  # type: ignore[arg-type]
                   version_id=version.id, name=version.name, currency=version.currency,
                   monthly_fee=version.monthly_fee, included_units=version.included_units,
                   unit_pricing=version.unit_pricing, quota=quota, rate_limit=rate, scopes=list(version.scopes or []),
                   created_at=plan.created_at, updated_at=max(plan.updated_at, version.updated_at))


class ApiController(Controller):
    path = "/v1/apis"
    tags = ["publishing"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createApi",
          summary="Create an API (draft) for a partner you are a member of")
    async def create(self, data: ApiIn, request: Request[Any, Any, Any], principal: Principal,
                     db_session: AsyncSession) -> ApiOut:
        data = await strict_body(request, ApiIn)
        return api_out(await service.create_api(db_session, principal, data))

    @get("/", operation_id="listApis", summary="Your partners' APIs, newest first")
    async def list_apis(self, principal: Principal, db_session: AsyncSession, partner_id: str | None = None,
                        status: Literal["draft", "published", "suspended"] | None = None,
                        limit: Limit = None, starting_after: StartingAfter = None) -> Page[ApiOut]:
        return await service.list_apis(db_session, principal, partner_id=partner_id, status=status, limit=limit,
                                       starting_after=starting_after, to_schema=api_out)

    @get("/{api_id:str}", operation_id="getApi", summary="An API of one of your partners")
    async def get_api(self, api_id: str, principal: Principal, db_session: AsyncSession) -> ApiOut:
        return api_out(await service.load_api(db_session, principal, api_id))

    @patch("/{api_id:str}", operation_id="updateApi",
           summary="Change an API's name, description, upstream URL, category or tags")
    async def update_api(self, api_id: str, data: ApiPatch, request: Request[Any, Any, Any], principal: Principal,
                         db_session: AsyncSession) -> ApiOut:
        data = await strict_body(request, ApiPatch)
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return api_out(await service.update_api(db_session, api, data))

    @get("/{api_id:str}/proxy-secret", operation_id="getApiProxySecret",
         summary="The secret the gateway sends to your upstream as X-Marketplace-Proxy-Secret")
    async def get_proxy_secret(self, api_id: str, principal: Principal, db_session: AsyncSession) -> ProxySecretOut:
        api = await service.load_api(db_session, principal, api_id)
        return ProxySecretOut(api_id=api.id, header=service.PROXY_SECRET_HEADER, secret=service.proxy_secret(api))

    @post("/{api_id:str}/proxy-secret/rotate", status_code=HTTP_200_OK, operation_id="rotateApiProxySecret",
          summary="Replace the proxy secret (the gateway uses the new one at once)")
    async def rotate_proxy_secret(self, api_id: str, principal: Principal,
                                  db_session: AsyncSession) -> ProxySecretOut:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        secret = await service.rotate_proxy_secret(db_session, api)
        return ProxySecretOut(api_id=api.id, header=service.PROXY_SECRET_HEADER, secret=secret)

    @post("/{api_id:str}/publish", status_code=HTTP_200_OK, operation_id="publishApi",
          summary="Publish the API to the catalog; 422 lists what is missing")
    async def publish(self, api_id: str, principal: Principal, db_session: AsyncSession) -> ApiOut:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return api_out(await service.publish_api(db_session, api))

    @post("/{api_id:str}/unpublish", status_code=HTTP_200_OK, operation_id="unpublishApi",
          summary="Take the API back to draft: hidden from the catalog, no new subscriptions")
    async def unpublish(self, api_id: str, principal: Principal, db_session: AsyncSession) -> ApiOut:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return api_out(await service.unpublish_api(db_session, api))

    @post("/{api_id:str}/import-openapi", status_code=HTTP_200_OK, operation_id="importOpenApi",
          operation_class=OpenApiDocumentOperation,
          summary="Create scopes and endpoints from an OpenAPI 3 document (JSON or YAML body)",
          description="Send the document as the raw body (`application/json` or `application/yaml`). Scopes come "
                      "from the OAuth 2 flows of `components.securitySchemes`; each operation becomes an endpoint "
                      "whose required scope is the first scope of its OAuth 2 security requirement, with the "
                      "metering weight of `x-marketplace-weight` (default 1). Existing scopes and endpoints are "
                      "skipped and listed in `skipped`. All or nothing: a problem answers 422 and changes nothing.")
    async def import_openapi(self, api_id: str, request: Request[Any, Any, Any], principal: Principal,
                             db_session: AsyncSession) -> ImportOut:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        result = await openapi_import.import_document(db_session, api, await request.body())
        return ImportOut(
            created=ImportCreatedOut(scopes=[scope_out(s) for s in result.scopes],
                                     endpoints=[endpoint_out(e) for e in result.endpoints]),
            skipped=[SkippedOut(kind=s["kind"], key=s["key"], reason=s["reason"])  # type: ignore[arg-type]
                     for s in result.skipped],
        )


class ScopeController(Controller):
    path = "/v1/apis/{api_id:str}/scopes"
    tags = ["publishing"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createScope", summary="Add an OAuth scope to the API")
    async def create(self, api_id: str, data: ScopeIn, request: Request[Any, Any, Any], principal: Principal,
                     db_session: AsyncSession) -> ScopeOut:
        data = await strict_body(request, ScopeIn)
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return scope_out(await service.create_scope(db_session, api, data))

    @get("/", operation_id="listScopes", summary="The API's scopes")
    async def list_scopes(self, api_id: str, principal: Principal, db_session: AsyncSession,
                          limit: Limit = None, starting_after: StartingAfter = None) -> Page[ScopeOut]:
        api = await service.load_api(db_session, principal, api_id)
        return await service.list_scopes(db_session, api, limit=limit, starting_after=starting_after,
                                         to_schema=scope_out)

    @delete("/{scope_id:str}", operation_id="deleteScope",
            summary="Delete a scope (409 while an endpoint requires it or a plan grants it)")
    async def delete_scope(self, api_id: str, scope_id: str, principal: Principal, db_session: AsyncSession) -> None:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        await service.delete_scope(db_session, api, scope_id)


class EndpointController(Controller):
    path = "/v1/apis/{api_id:str}/endpoints"
    tags = ["publishing"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createEndpoint",
          summary="Add an endpoint (method + path template, required scope, metering weight)")
    async def create(self, api_id: str, data: EndpointIn, request: Request[Any, Any, Any], principal: Principal,
                     db_session: AsyncSession) -> EndpointOut:
        data = await strict_body(request, EndpointIn)
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return endpoint_out(await service.create_endpoint(db_session, api, data))

    @get("/", operation_id="listEndpoints", summary="The API's endpoints")
    async def list_endpoints(self, api_id: str, principal: Principal, db_session: AsyncSession,
                             limit: Limit = None, starting_after: StartingAfter = None) -> Page[EndpointOut]:
        api = await service.load_api(db_session, principal, api_id)
        return await service.list_endpoints(db_session, api, limit=limit, starting_after=starting_after,
                                            to_schema=endpoint_out)

    @get("/{endpoint_id:str}", operation_id="getEndpoint", summary="One endpoint of the API")
    async def get_endpoint(self, api_id: str, endpoint_id: str, principal: Principal,
                           db_session: AsyncSession) -> EndpointOut:
        api = await service.load_api(db_session, principal, api_id)
        return endpoint_out(await service.get_endpoint(db_session, api, endpoint_id))

    @patch("/{endpoint_id:str}", operation_id="updateEndpoint", summary="Change an endpoint")
    async def update_endpoint(self, api_id: str, endpoint_id: str, data: EndpointPatch,
                              request: Request[Any, Any, Any], principal: Principal,
                              db_session: AsyncSession) -> EndpointOut:
        data = await strict_body(request, EndpointPatch)
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return endpoint_out(await service.update_endpoint(db_session, api, endpoint_id, data))

    @delete("/{endpoint_id:str}", operation_id="deleteEndpoint", summary="Delete an endpoint")
    async def delete_endpoint(self, api_id: str, endpoint_id: str, principal: Principal,
                              db_session: AsyncSession) -> None:
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        await service.delete_endpoint(db_session, api, endpoint_id)


class ApiPlanController(Controller):
    path = "/v1/apis/{api_id:str}/plans"
    tags = ["publishing"]

    @post("/", status_code=HTTP_201_CREATED, operation_id="createPlan",
          summary="Add a priced plan (fee, included units, unit pricing, quota, rate limits, scopes)")
    async def create(self, api_id: str, data: PlanIn, request: Request[Any, Any, Any], principal: Principal,
                     db_session: AsyncSession) -> PlanOut:
        data = await strict_body(request, PlanIn)
        api = await service.load_api(db_session, principal, api_id, for_update=True)
        return plan_out(*await plans.create_plan(db_session, api, data))

    @get("/", operation_id="listPlans", summary="The API's plans (current versions), newest first")
    async def list_plans(self, api_id: str, principal: Principal, db_session: AsyncSession,
                         status: Literal["active", "archived"] | None = None,
                         limit: Limit = None, starting_after: StartingAfter = None) -> Page[PlanOut]:
        api = await service.load_api(db_session, principal, api_id)
        return await plans.list_plans(db_session, api, status=status, limit=limit, starting_after=starting_after,
                                      to_schema=plan_out)


class PlanController(Controller):
    path = "/v1/plans"
    tags = ["publishing"]

    @get("/{plan_id:str}", operation_id="getPlan", summary="A plan of one of your APIs (its current version)")
    async def get_plan(self, plan_id: str, principal: Principal, db_session: AsyncSession) -> PlanOut:
        _, plan = await plans.load_plan(db_session, principal, plan_id)
        return plan_out(plan, await plans.current_version(db_session, plan))

    @patch("/{plan_id:str}", operation_id="updatePlan",
           summary="Change a plan; with subscribers this makes a new version and existing ones keep theirs")
    async def update_plan(self, plan_id: str, data: PlanPatch, request: Request[Any, Any, Any],
                          principal: Principal, db_session: AsyncSession) -> PlanOut:
        data = await strict_body(request, PlanPatch)
        api, plan = await plans.load_plan(db_session, principal, plan_id)
        return plan_out(*await plans.update_plan(db_session, api, plan, data))

    @delete("/{plan_id:str}", status_code=HTTP_200_OK, operation_id="archivePlan",
            summary="Archive a plan: no new subscriptions; existing subscribers keep it")
    async def archive_plan(self, plan_id: str, principal: Principal, db_session: AsyncSession) -> PlanOut:
        api, plan = await plans.load_plan(db_session, principal, plan_id)
        return plan_out(*await plans.archive_plan(db_session, api, plan))


class AdminApiController(Controller):
    path = "/v1/admin/apis"
    tags = ["admin"]

    @get("/", operation_id="adminListApis", summary="Operators: every API on the platform, newest first")
    async def list_apis(self, principal: Principal, db_session: AsyncSession, partner_id: str | None = None,
                        status: Literal["draft", "published", "suspended"] | None = None,
                        limit: Limit = None, starting_after: StartingAfter = None) -> Page[ApiOut]:
        require_operator(principal)
        return await service.list_all_apis(db_session, partner_id=partner_id, status=status, limit=limit,
                                           starting_after=starting_after, to_schema=api_out)

    @post("/{api_id:str}/suspend", status_code=HTTP_200_OK, operation_id="suspendApi",
          summary="Operators: suspend an API (hidden from the catalog, the gateway refuses it)")
    async def suspend(self, api_id: str, principal: Principal, db_session: AsyncSession,
                      request: Request[Any, Any, Any], data: SuspendIn | None = None) -> ApiOut:
        require_operator(principal)
        body = await request.body()
        reason = (await strict_body(request, SuspendIn)).reason if body.strip() else ""
        api = await service.load_api_as_operator(db_session, api_id)
        return api_out(await service.suspend_api(db_session, api, reason))

    @post("/{api_id:str}/unsuspend", status_code=HTTP_200_OK, operation_id="unsuspendApi",
          summary="Operators: lift a suspension (back to published if it was, else draft)")
    async def unsuspend(self, api_id: str, principal: Principal, db_session: AsyncSession) -> ApiOut:
        require_operator(principal)
        api = await service.load_api_as_operator(db_session, api_id)
        return api_out(await service.unsuspend_api(db_session, api))


ROUTES = [ApiController, ScopeController, EndpointController, ApiPlanController, PlanController, AdminApiController]
