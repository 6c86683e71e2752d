"""Make the OpenAPI document tell the truth about errors.

flask-smorest documents every error response with its own ``ErrorSchema`` as
``application/json``; AOS answers every error with RFC 9457
``application/problem+json`` carrying a catalog ``code`` (aos.web.errors). This
replaces those responses, once per app, so generated clients and schemathesis see
the errors the API really sends.
"""

from __future__ import annotations

import http
from typing import Any

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api

from aos.plan.schema import plan_json_schema
from aos.skills.registry import SkillRegistry

PROBLEM_MIME = "application/problem+json"


class ProblemItemSchema(ma.Schema):
    path = ma.fields.String(required=True, metadata={"description": "JSON path of the offending value."})
    code = ma.fields.String(required=True, metadata={"description": "Catalog code of this problem."})
    message = ma.fields.String(required=True)


class ProblemSchema(ma.Schema):
    """An error: RFC 9457 problem details with the failure-catalog ``code``."""

    type = ma.fields.String(required=True, metadata={"description": "/api/v1/errors/{code}: the catalog entry."})
    title = ma.fields.String(required=True, metadata={"description": "What the code means and what to do."})
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True, metadata={"description": "What went wrong with this request."})
    code = ma.fields.String(required=True, metadata={"description": "Failure-catalog code (see /api/v1/errors)."})
    instance = ma.fields.String(allow_none=True, metadata={"description": "The request path."})
    problems = ma.fields.List(ma.fields.Nested(ProblemItemSchema),
                              metadata={"description": "Every validation problem, each with its path."})
    details = ma.fields.Dict(metadata={"description": "Machine-readable facts about the error."})


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_MIME: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


class ProblemContentPlugin(BasePlugin):
    """Gives problem+json content to the error responses a route documents inline without a body
    (``@blp.alt_response(503, description=...)``): every 4xx/5xx of AOS has that body."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **_: Any) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict):
                continue
            for status, response in (operation.get("responses") or {}).items():
                if str(status).isdigit() and int(status) >= 400 and isinstance(response, dict) \
                        and "$ref" not in response and "content" not in response:
                    response.update(_problem_response(response.get("description", "Error")))


# What every operation of a kind can answer besides what its route documents: the document lists each
# status an operation can return (no catch-all `default`), so a client and schemathesis see them all.
COMMON_ERRORS: dict[str, str] = {
    "400": "BODY_MALFORMED: the body is not JSON",
    "401": "AUTH_MISSING, AUTH_INVALID or AUTH_EXPIRED: no valid `Authorization: Bearer <api key or JWT>`",
    "403": "FORBIDDEN_SCOPE: the key lacks the scope this operation needs",
    "404": "No such object for this tenant (NOT_FOUND or the object's own *_NOT_FOUND code)",
    "413": "REQUEST_TOO_LARGE: the body exceeds AOS_MAX_REQUEST_BYTES",
    "422": "VALIDATION_ERROR (every problem with its path), JSON_NUMBER_TOO_LARGE or JSON_TOO_DEEP",
    "429": "RATE_LIMITED (the caller's or the tenant's rate; Retry-After and RateLimit-* headers) or "
           "QUOTA_EXCEEDED (a daily quota: details.quota and details.resets_at)",
    "500": "INTERNAL_ERROR: a bug; it was logged",
    "503": "SERVICE_UNAVAILABLE: the database is unreachable; retry shortly",
}
CURSOR_INVALID = "CURSOR_INVALID: the cursor was not returned by this API"


class ErrorStatusesPlugin(BasePlugin):
    """Documents the errors every operation shares, by what the operation is: protected (401, 403, 429),
    about an object named in its path (404), with a body (400, 413, 422) or parameters (422), paged
    (400 for a forged cursor), backed by the database (503); every one can fail with a 500."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **_: Any) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            protected = operation.get("security") != []
            params = [p for p in operation.get("parameters", []) if isinstance(p, dict)]
            statuses = ["500"]
            if protected:
                statuses += ["401", "403", "429", "503"]
            if path and "{" in path:
                statuses.append("404")
            if "requestBody" in operation:
                statuses += ["400", "413", "422"]
            if params:
                statuses.append("422")
            for status in statuses:
                if status not in responses:
                    responses[status] = _problem_response(COMMON_ERRORS[status])
            if _has_cursor(params) and "400" not in responses:
                responses["400"] = _problem_response(CURSOR_INVALID)


def _has_cursor(params: list[dict[str, Any]]) -> bool:
    for p in params:
        schema = p.get("schema")
        if p.get("name") == "cursor" or (isinstance(schema, type) and "cursor" in getattr(schema, "_declared_fields", {})):
            return True
    return False


def document_components(api: Api, registry: SkillRegistry) -> None:
    """The components request bodies refer to: the plan format, with the skills of ``registry``."""
    if "Plan" not in api.spec.components.schemas:
        api.spec.components.schema("Plan", component=plan_json_schema(registry))


def exact_nullable_reference(self: Any, field: ma.fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """A nullable nested schema as ``allOf: [$ref], nullable: true`` (the referenced object, or null).

    For OpenAPI 3.0, apispec writes ``anyOf: [{type: object, nullable: true}, {$ref}]``, whose first branch
    admits any object at all: the document would accept fields the server refuses."""
    any_of = ret.get("anyOf")
    if field.allow_none and isinstance(any_of, list) and {"type": "object", "nullable": True} in any_of:
        rest = [s for s in any_of if s != {"type": "object", "nullable": True}]
        if rest and all("$ref" in s for s in rest):
            del ret["anyOf"]
            return {"allOf": rest, "nullable": True}
    return {}


def use_problem_responses(api: Api) -> None:
    """Document every error response of ``api`` as problem+json, and the errors every operation shares."""
    converter = api.ma_plugin.converter
    if not any(getattr(f, "__func__", None) is exact_nullable_reference for f in converter.attribute_functions):
        converter.add_attribute_function(exact_nullable_reference)
    for cls in (ProblemContentPlugin, ErrorStatusesPlugin):
        if not any(isinstance(p, cls) for p in api.spec.plugins):
            plugin = cls()
            plugin.init_spec(api.spec)
            api.spec.plugins = (*api.spec.plugins, plugin)
    components = api.spec.components
    if "Problem" not in components.schemas:
        components.schema("Problem", schema=ProblemSchema)
    for registry in (components.responses_lazy, components.responses):
        for name, response in list(registry.items()):
            status = http.HTTPStatus[name] if name in http.HTTPStatus.__members__ else None
            if name == api.DEFAULT_ERROR_RESPONSE_NAME or (status is not None and status >= 400):
                registry[name] = _problem_response(response.get("description", "Error"))
