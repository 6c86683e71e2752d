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


def use_problem_responses(api: Api) -> None:
    """Document every error response of ``api`` (its ``default`` one included) as problem+json."""
    if not any(isinstance(p, ProblemContentPlugin) for p in api.spec.plugins):
        plugin = ProblemContentPlugin()
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
