"""The cost simulator: what a plan would cost, use and take, judged against budgets and capabilities."""

from __future__ import annotations

from flask.views import MethodView

from aos.services.simulate import simulate_plan
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.resources.simulate.schemas import SimulateSchema, SimulationSchema

blp = ProtectedBlueprint("simulate", __name__, url_prefix="/api/v1/simulate", description="Cost simulator")
# nothing is written: reading runs is enough
require_scopes(blp, write="runs:read")


@blp.route("")
class Simulate(MethodView):
    @blp.arguments(SimulateSchema)
    @blp.alt_response(404, description="AGENT_NOT_FOUND or NOT_FOUND: no such agent_id for this tenant")
    @blp.response(200, SimulationSchema)
    def post(self, body):  # noqa: ANN001, ANN201
        """Estimate a plan without running it.

        Per step and in total: cost, tokens and latency, from the skills' cost models refined by
        this tenant's history of the same skill (and LLM model); then budget and capability
        verdicts and warnings. An invalid plan is a 422 with every problem, as for `POST /runs`."""
        return simulate_plan(current_tenant(), body["plan"], inputs=body["inputs"], agent_id=body["agent_id"])
