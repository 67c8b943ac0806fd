"""Creating an API's scopes and endpoints from an OpenAPI 3 document of it.

- Scopes: every scope of every OAuth 2 flow in `components.securitySchemes` (with its description).
- Endpoints: every operation (path + method). Its required scope is the first scope of the first
  OAuth 2 (or OpenID Connect) requirement in the operation's `security` (or the document's, when the
  operation has none; `security: []` means no scope). `x-marketplace-weight` sets the metering
  weight (default 1); `summary` (or `description`) becomes the endpoint's description.
- Scopes and endpoints that already exist are skipped and reported, nothing is overwritten.
- The import is all or nothing: any problem answers 422 listing every problem, and nothing changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from marketplace.core.errors import Unprocessable
from marketplace.core.ids import new_id
from partners.publishing.models import Api, Endpoint, Scope
from partners.publishing.service import field_error, path_template_problem, scope_names, touch

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
SCOPE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*(:[a-z0-9_.-]+)*$")
WEIGHT_EXTENSION = "x-marketplace-weight"


@dataclass
class EndpointSpec:
    method: str
    path: str
    scope: str | None
    weight: int
    description: str


@dataclass
class ImportSpec:
    scopes: dict[str, str] = field(default_factory=dict)
    endpoints: list[EndpointSpec] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ImportResult:
    scopes: list[Scope]
    endpoints: list[Endpoint]
    skipped: list[dict[str, str]]


def _invalid(detail: str, errors: list[dict[str, str]] | None = None) -> Unprocessable:
    return Unprocessable(detail, errors=errors or [field_error("body", detail)], slug="invalid-openapi",
                         title="Invalid OpenAPI document")


def parse_document(raw: bytes) -> dict[str, Any]:
    """The document as a mapping, from JSON or YAML text."""
    if not raw.strip():
        raise _invalid("The body is empty. Send an OpenAPI 3 document as JSON or YAML.")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise _invalid(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise _invalid("The document is nested too deeply.") from None
    except ValueError:
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise _invalid(f"The body is neither JSON nor YAML{where}: {getattr(exc, 'problem', None) or exc}.") from None
        except (RecursionError, ValueError):
            raise _invalid("The body is neither JSON nor YAML text (UTF-8), or is nested too deeply.") from None
    if not isinstance(doc, dict):
        raise _invalid("The document must be a JSON or YAML object with `openapi`, `info` and `paths`.")
    return doc


def _oauth_schemes(doc: dict[str, Any], errors: list[dict[str, str]]) -> tuple[set[str], dict[str, str]]:
    """(names of OAuth 2 / OpenID Connect schemes, scope name → description)."""
    components = doc.get("components") or {}
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    if schemes is None:
        return set(), {}
    if not isinstance(schemes, dict):
        errors.append(field_error("components.securitySchemes", "must be an object"))
        return set(), {}
    names: set[str] = set()
    scopes: dict[str, str] = {}
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict):
            continue
        if scheme.get("type") == "openIdConnect":
            names.add(str(name))
        if scheme.get("type") != "oauth2":
            continue
        names.add(str(name))
        flows = scheme.get("flows")
        if not isinstance(flows, dict):
            errors.append(field_error(f"components.securitySchemes.{name}.flows", "must be an object"))
            continue
        for flow_name, flow in flows.items():
            flow_scopes = flow.get("scopes") if isinstance(flow, dict) else None
            where = f"components.securitySchemes.{name}.flows.{flow_name}.scopes"
            if not isinstance(flow_scopes, dict):
                errors.append(field_error(where, "must be an object of scope name → description"))
                continue
            for scope, description in flow_scopes.items():
                if not isinstance(scope, str) or not SCOPE_NAME.match(scope) or len(scope) > 100:
                    errors.append(field_error(f"{where}.{scope}", "is not a valid scope name (like weather:read: "
                                                                  "lowercase letters, digits, _ . - and ':' separators)"))
                    continue
                scopes.setdefault(scope, str(description or "").strip()[:1000])
    return names, scopes


def _required_scope(security: Any, oauth: set[str], where: str, errors: list[dict[str, str]]) -> str | None:
    if security is None:
        return None
    if not isinstance(security, list):
        errors.append(field_error(where, "must be a list of security requirements"))
        return None
    for requirement in security:
        if not isinstance(requirement, dict):
            errors.append(field_error(where, "each security requirement must be an object"))
            return None
        for scheme, scopes in requirement.items():
            if scheme in oauth and isinstance(scopes, list) and scopes:
                return str(scopes[0])
    return None


def _weight(operation: dict[str, Any], where: str, errors: list[dict[str, str]]) -> int:
    value = operation.get(WEIGHT_EXTENSION, 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        errors.append(field_error(f"{where}.{WEIGHT_EXTENSION}", "must be an integer from 1 to 1000000"))
        return 1
    return value


def read_document(doc: dict[str, Any]) -> ImportSpec:
    """What the document declares; 422 listing every problem."""
    version = doc.get("openapi")
    if isinstance(version, float):  # YAML reads an unquoted `openapi: 3.1` as a number
        version = str(version)
    if "swagger" in doc and version is None:
        raise _invalid("This is a Swagger 2.0 document; only OpenAPI 3 is supported. Convert it first "
                       "(for example with swagger2openapi).", [field_error("swagger", "OpenAPI 3 required")])
    if not isinstance(version, str) or not version.startswith("3."):
        raise _invalid("The document has no `openapi: 3.x` version field; only OpenAPI 3 documents can be imported.",
                       [field_error("openapi", "must be a string like \"3.1.0\"")])
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise _invalid("The document has no `paths`: nothing to import.",
                       [field_error("paths", "must be a non-empty object of path → operations")])
    errors: list[dict[str, str]] = []
    oauth, scopes = _oauth_schemes(doc, errors)
    spec = ImportSpec(scopes=scopes)
    root_security = doc.get("security")
    for path, item in paths.items():
        where = f"paths.{path}"
        if not isinstance(item, dict):
            errors.append(field_error(where, "must be an object of method → operation"))
            continue
        problem = path_template_problem(str(path))
        if problem:
            errors.append(field_error(where, f"is not a valid path template: it {problem}"))
            continue
        if "$ref" in item:
            spec.skipped.append({"kind": "endpoint", "key": str(path), "reason": "path items by $ref are not imported"})
        for method, operation in item.items():
            if method not in METHODS:
                continue
            op_where = f"{where}.{method}"
            if not isinstance(operation, dict):
                errors.append(field_error(op_where, "must be an operation object"))
                continue
            security = operation["security"] if "security" in operation else root_security
            spec.endpoints.append(EndpointSpec(
                method=method.upper(), path=str(path)[:512],
                scope=_required_scope(security, oauth, f"{op_where}.security", errors),
                weight=_weight(operation, op_where, errors),
                description=str(operation.get("summary") or operation.get("description") or "").strip()[:2000],
            ))
    if errors:
        raise _invalid("The OpenAPI document cannot be imported. Fix: "
                       + "; ".join(f"{e['field']} {e['message']}" for e in errors[:20]) + ".", errors)
    return spec


async def import_document(session: AsyncSession, api: Api, raw: bytes) -> ImportResult:
    spec = read_document(parse_document(raw))
    existing_scopes = await scope_names(session, api.id)
    existing_endpoints = set((await session.execute(
        select(Endpoint.method, Endpoint.path).where(Endpoint.api_id == api.id))).tuples().all())
    available = existing_scopes | set(spec.scopes)
    errors = [
        field_error(f"paths.{ep.path}.{ep.method.lower()}.security",
                    f"requires the scope {ep.scope!r}, which is neither declared in components.securitySchemes "
                    "nor on the API")
        for ep in spec.endpoints if ep.scope is not None and ep.scope not in available
    ]
    if errors:
        raise _invalid("The OpenAPI document cannot be imported. Fix: "
                       + "; ".join(f"{e['field']} {e['message']}" for e in errors[:20]) + ".", errors)
    skipped = list(spec.skipped)
    created_scopes: list[Scope] = []
    for name, description in spec.scopes.items():
        if name in existing_scopes:
            skipped.append({"kind": "scope", "key": name, "reason": "already exists"})
            continue
        created_scopes.append(Scope(id=new_id("scope"), api_id=api.id, name=name, description=description))
    created_endpoints: list[Endpoint] = []
    seen: set[tuple[str, str]] = set()
    for ep in spec.endpoints:
        key = (ep.method, ep.path)
        if key in existing_endpoints or key in seen:
            skipped.append({"kind": "endpoint", "key": f"{ep.method} {ep.path}", "reason": "already exists"})
            continue
        seen.add(key)
        created_endpoints.append(Endpoint(id=new_id("endpoint"), api_id=api.id, method=ep.method, path=ep.path,
                                          scope=ep.scope, weight=ep.weight, description=ep.description))
    session.add_all([*created_scopes, *created_endpoints])
    if created_scopes or created_endpoints:
        touch(session, api)
    await session.flush()
    return ImportResult(scopes=created_scopes, endpoints=created_endpoints, skipped=skipped)
