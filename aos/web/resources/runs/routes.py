"""Runs: submit a plan, read its state and timeline, cancel, resume."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from aos.services import runs as run_service
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.runs.schemas import (
    RunCreateSchema,
    RunListArgsSchema,
    RunListSchema,
    RunSchema,
    TimelineSchema,
)

blp = ProtectedBlueprint("runs", __name__, url_prefix="/api/v1/runs", description="Workflow runs")


def _publisher():  # noqa: ANN202
    return current_app.extensions["aos.publisher"]


@blp.route("")
class Runs(MethodView):
    @blp.arguments(RunCreateSchema)
    @blp.response(201, RunSchema)
    @blp.alt_response(422, description="The plan is invalid: problem+json listing every problem with its path")
    def post(self, body):  # noqa: ANN001, ANN201
        """Submit a plan as a new run.

        The run and its enqueue are committed in one transaction, so a run that got
        `201` is never lost, even if the broker is down at that moment."""
        tenant = current_tenant()
        tenant.require("runs:write")
        run_id = run_service.submit_run(tenant, body["plan"], _publisher(), inputs=body["inputs"],
                                        agent_id=body["agent_id"])
        return run_service.get_run(tenant, run_id)

    @blp.arguments(RunListArgsSchema, location="query")
    @blp.response(200, RunListSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """List this tenant's runs, newest first."""
        return {"items": run_service.list_runs(current_tenant(), status=args.get("status"), limit=args["limit"])}


@blp.route("/<run_id>")
class RunItem(MethodView):
    @blp.response(200, RunSchema)
    def get(self, run_id):  # noqa: ANN001, ANN201
        """A run with each step's status, attempts, output, error and timings."""
        return run_service.get_run(current_tenant(), run_id)


@blp.route("/<run_id>/timeline")
class RunTimeline(MethodView):
    @blp.response(200, TimelineSchema)
    def get(self, run_id):  # noqa: ANN001, ANN201
        """Every state change of the run and its steps, oldest first."""
        return {"items": run_service.get_timeline(current_tenant(), run_id)}


@blp.route("/<run_id>/cancel")
class RunCancel(MethodView):
    @blp.response(200, RunSchema)
    def post(self, run_id):  # noqa: ANN001, ANN201
        """Cancel a queued or running run: no step starts after this returns."""
        tenant = current_tenant()
        tenant.require("runs:write")
        return run_service.cancel_run(tenant, run_id, _publisher())


@blp.route("/<run_id>/resume")
class RunResume(MethodView):
    @blp.response(200, RunSchema)
    def post(self, run_id):  # noqa: ANN001, ANN201
        """Resume a failed, cancelled or dead-lettered run from its first unfinished step."""
        tenant = current_tenant()
        tenant.require("runs:write")
        return run_service.resume_run(tenant, run_id, _publisher())
