"""Agents: named actors with a capability policy and a state; their runs and what those runs executed."""

from __future__ import annotations

from flask.views import MethodView

from aos.services import agents as agent_service
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint, current_tenant
from aos.web.pagination import PageArgsSchema
from aos.web.resources.agents.schemas import (
    AgentCreateSchema,
    AgentPageSchema,
    AgentRunsArgsSchema,
    AgentSchema,
    AgentStatePutSchema,
    AgentStateSchema,
    ProvenancePageSchema,
)
from aos.web.resources.runs.schemas import RunPageSchema, RunSchema

blp = ProtectedBlueprint("agents", __name__, url_prefix="/api/v1/agents", description="Agents")
require_scopes(blp)


@blp.route("")
class Agents(MethodView):
    @blp.arguments(AgentCreateSchema)
    @blp.response(201, AgentSchema)
    @blp.alt_response(409, description="CONFLICT: an agent of this tenant already has that name")
    def post(self, body):  # noqa: ANN001, ANN201
        """Create an agent with a capability policy (409 when the name is taken).

        Runs submitted with its `agent_id` are checked against the policy at submission and again
        at execution."""
        return agent_service.create_agent(current_tenant(), body["name"], body["capabilities"])

    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, AgentPageSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """List this tenant's agents, newest first."""
        return agent_service.list_agents(current_tenant(), limit=args["limit"], cursor=args["cursor"])


@blp.route("/<agent_id>")
class AgentItem(MethodView):
    @blp.response(200, AgentSchema)
    def get(self, agent_id):  # noqa: ANN001, ANN201
        """One agent."""
        return agent_service.get_agent(current_tenant(), agent_id)


@blp.route("/<agent_id>/runs")
class AgentRuns(MethodView):
    @blp.arguments(AgentRunsArgsSchema, location="query")
    @blp.response(200, RunPageSchema)
    def get(self, args, agent_id):  # noqa: ANN001, ANN201
        """The agent's runs, newest first (filter by `status`)."""
        return agent_service.list_agent_runs(current_tenant(), agent_id, status=args.get("status"),
                                             limit=args["limit"], cursor=args["cursor"])


@blp.route("/<agent_id>/runs/<run_id>")
class AgentRun(MethodView):
    @blp.response(200, RunSchema)
    def get(self, agent_id, run_id):  # noqa: ANN001, ANN201
        """One run of the agent (404 when the run is not this agent's)."""
        return agent_service.get_agent_run(current_tenant(), agent_id, run_id)


@blp.route("/<agent_id>/provenance")
class AgentProvenance(MethodView):
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, ProvenancePageSchema)
    def get(self, args, agent_id):  # noqa: ANN001, ANN201
        """What each of the agent's runs executed: plan hash, workflow and version, skill versions, spend."""
        return agent_service.provenance(current_tenant(), agent_id, limit=args["limit"], cursor=args["cursor"])


@blp.route("/<agent_id>/state")
class AgentState(MethodView):
    @blp.response(200, AgentStateSchema)
    def get(self, agent_id):  # noqa: ANN001, ANN201
        """The agent's state: a JSON object it keeps between runs."""
        return agent_service.get_state(current_tenant(), agent_id)

    @blp.arguments(AgentStatePutSchema)
    @blp.response(200, AgentStateSchema)
    def put(self, body, agent_id):  # noqa: ANN001, ANN201
        """Replace the agent's state as a whole."""
        return agent_service.put_state(current_tenant(), agent_id, body["state"])
