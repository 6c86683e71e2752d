"""Console pages to read what runs are made from: stored workflows (every version) and agents."""

from __future__ import annotations

from flask import render_template, request

from aos.services import agents as agent_service
from aos.services import runs as run_service
from aos.services import workflows as workflow_service
from aos.web.console.blueprint import bp
from aos.web.console.session import current

PAGE_SIZE = 25
RECENT_RUNS = 10


@bp.get("/workflows")
def workflows() -> str:
    """This tenant's stored workflows (the latest version of each), most recently saved first."""
    ctx = current()
    ctx.require("runs:read")
    page = workflow_service.list_workflows(ctx, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/workflows.html", page=page, first_page=not request.args.get("cursor"))


@bp.get("/workflows/<name>")
def workflow(name: str) -> str:
    """Every version of a workflow, its latest plan, and its latest runs."""
    ctx = current()
    ctx.require("runs:read")
    versions = workflow_service.list_versions(ctx, name)
    recent = run_service.list_runs(ctx, workflow=name, limit=RECENT_RUNS)
    return render_template("console/workflow.html", name=name, versions=versions, runs=recent["items"])


@bp.get("/agents")
def agents() -> str:
    """This tenant's agents, newest first."""
    ctx = current()
    ctx.require("runs:read")
    page = agent_service.list_agents(ctx, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/agents.html", page=page, first_page=not request.args.get("cursor"))


@bp.get("/agents/<agent_id>")
def agent(agent_id: str) -> str:
    """An agent's capabilities, state, and latest runs."""
    ctx = current()
    ctx.require("runs:read")
    detail = agent_service.get_agent(ctx, agent_id)
    recent = agent_service.list_agent_runs(ctx, agent_id, limit=RECENT_RUNS)
    return render_template("console/agent.html", agent=detail, runs=recent["items"])
