"""Workflows: plans stored under a name; every save is a new version, and a run pins its version."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services import runs as run_service
from aos.services import workflows as workflow_service
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.pagination import PageArgsSchema
from aos.web.resources.runs.schemas import RunSchema
from aos.web.resources.workflows.schemas import (
    WorkflowCreateSchema,
    WorkflowPageSchema,
    WorkflowRunSchema,
    WorkflowSchema,
    WorkflowVersionsSchema,
)

blp = ProtectedBlueprint("workflows", __name__, url_prefix="/api/v1/workflows",
                         description="Stored, versioned plans")
require_scopes(blp)


@blp.route("")
class Workflows(MethodView):
    @blp.arguments(WorkflowCreateSchema)
    @blp.response(201, WorkflowSchema)
    def post(self, body):  # noqa: ANN001, ANN201
        """Save a plan under a name: the first save is version 1, each later save the next version.

        The plan is validated as for `POST /runs` (422 with every problem)."""
        return workflow_service.save_workflow(current_tenant(), body["name"], body["plan"])

    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, WorkflowPageSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """List this tenant's workflows (the latest version of each), most recently saved first."""
        return workflow_service.list_workflows(current_tenant(), limit=args["limit"], cursor=args["cursor"])


@blp.route("/<name>")
class WorkflowItem(MethodView):
    @blp.response(200, WorkflowSchema)
    def get(self, name):  # noqa: ANN001, ANN201
        """The latest version of a workflow."""
        return workflow_service.get_workflow(current_tenant(), name)


@blp.route("/<name>/versions")
class WorkflowVersions(MethodView):
    @blp.response(200, WorkflowVersionsSchema)
    def get(self, name):  # noqa: ANN001, ANN201
        """Every version of a workflow, newest first."""
        return {"items": workflow_service.list_versions(current_tenant(), name)}


@blp.route("/<name>/versions/<int:version>")
class WorkflowVersion(MethodView):
    @blp.response(200, WorkflowSchema)
    def get(self, name, version):  # noqa: ANN001, ANN201
        """One version of a workflow."""
        return workflow_service.get_workflow(current_tenant(), name, version)


@blp.route("/<name>/runs")
class WorkflowRuns(MethodView):
    @blp.arguments(WorkflowRunSchema)
    @blp.response(201, RunSchema)
    @blp.alt_response(402, description="BUDGET_EXCEEDED: the plan has more steps than its budget.max_steps")
    @blp.alt_response(403, description="CAPABILITY_DENIED: the agent may not do what the plan asks (or FORBIDDEN_SCOPE)")
    def post(self, body, name):  # noqa: ANN001, ANN201
        """Start a run of a workflow: the latest version, or `version`; the run pins that version."""
        tenant = current_tenant()
        run_id = workflow_service.run_workflow(tenant, name, current_app.extensions["aos.publisher"],
                                               version=body["version"], inputs=body["inputs"],
                                               agent_id=body["agent_id"])
        return run_service.get_run(tenant, run_id)
