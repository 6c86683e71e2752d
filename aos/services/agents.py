"""Agents: named actors of a tenant with a capability policy, a state, and the runs they made."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from aos.db.models import Agent, Run, Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan.model import concurrency_problems
from aos.services.capabilities import load_agent
from aos.services.pagination import DEFAULT_LIMIT, paginate
from aos.services.tenancy import TenantContext

# ``concurrency``: at most N of its runs at once, optionally per a key of the inputs (docs/concurrency.md)
CAPABILITY_KEYS = ("allowed_skills", "http_hosts", "db_connections", "max_cost_usd", "concurrency")
# 1 to 100 characters (the column), none a control character, not all blank. "Blank" is spelled out (Python's
# whitespace) rather than `\S`, whose meaning differs between regex engines: the API documents this very
# pattern, and a client's validator must agree with ours on every string.
NAME_LENGTH = (1, 100)
_BLANK = "\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NAME = re.compile(f"^[^\\x00-\\x1f\\x7f]*[^\\x00-\\x1f\\x7f{_BLANK}][^\\x00-\\x1f\\x7f]*$")
NAME_RULE = "1 to 100 characters, no control characters, not blank"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def agent_view(a: Agent) -> dict[str, Any]:
    return {"id": str(a.id), "name": a.name, "capabilities": a.capabilities, "state": a.state,
            "created_at": _iso(a.created_at)}


def capability_problems(caps: Any) -> list[dict[str, str]]:
    """What is wrong with a capability policy (empty: it is well formed)."""
    if not isinstance(caps, dict):
        return [{"path": "$.capabilities", "code": "VALIDATION_ERROR", "message": "must be an object"}]
    problems = []
    for k, v in caps.items():
        path = f"$.capabilities.{k}"
        if k not in CAPABILITY_KEYS:
            problems.append({"path": path, "code": "VALIDATION_ERROR",
                             "message": f"unknown capability; known: {', '.join(CAPABILITY_KEYS)}"})
        elif k == "concurrency":
            problems.extend({**p, "code": "VALIDATION_ERROR"} for p in concurrency_problems(path, v))
        elif k == "max_cost_usd":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                problems.append({"path": path, "code": "VALIDATION_ERROR", "message": "must be a number >= 0"})
        elif not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            problems.append({"path": path, "code": "VALIDATION_ERROR",
                             "message": "must be a list of non-empty strings"})
    return problems


def create_agent(ctx: TenantContext, name: str, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new agent of this tenant; names are unique per tenant (CONFLICT otherwise)."""
    caps = capabilities if capabilities is not None else {}
    problems = capability_problems(caps)
    if not isinstance(name, str) or not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1] or not NAME.fullmatch(name):
        problems.insert(0, {"path": "$.name", "code": "VALIDATION_ERROR", "message": NAME_RULE})
    if problems:
        raise AosError("VALIDATION_ERROR", f"{problems[0]['path']}: {problems[0]['message']}", problems=problems)
    with session_scope() as s:
        agent = Agent(tenant_id=ctx.tenant_id, name=name, capabilities=caps)
        s.add(agent)
        try:
            s.flush()
        except IntegrityError:
            raise AosError("CONFLICT", f"an agent named {name!r} already exists") from None
        s.refresh(agent)
        return agent_view(agent)


def get_agent(ctx: TenantContext, agent_id: uuid.UUID | str) -> dict[str, Any]:
    with session_scope() as s:
        return agent_view(load_agent(s, ctx, agent_id))


def list_agents(ctx: TenantContext, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """A page of this tenant's agents, newest first."""
    with session_scope() as s:
        return paginate(s, select(Agent).where(Agent.tenant_id == ctx.tenant_id), created_col=Agent.created_at,
                        id_col=Agent.id, limit=limit, cursor=cursor, view=agent_view)


def list_agent_runs(ctx: TenantContext, agent_id: uuid.UUID | str, *, status: str | None = None,
                    limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """A page of the runs this agent made, newest first."""
    from aos.services.runs import list_runs

    with session_scope() as s:
        agent_uuid = load_agent(s, ctx, agent_id).id
    return list_runs(ctx, status=status, agent_id=agent_uuid, limit=limit, cursor=cursor)


def get_agent_run(ctx: TenantContext, agent_id: uuid.UUID | str, run_id: uuid.UUID | str) -> dict[str, Any]:
    """One run of this agent; NOT_FOUND when the run is not the agent's (even if it is the tenant's)."""
    from aos.services.runs import get_run

    with session_scope() as s:
        agent_uuid = load_agent(s, ctx, agent_id).id
    run = get_run(ctx, run_id)
    if run["agent_id"] != str(agent_uuid):
        raise AosError("NOT_FOUND", f"agent {agent_id} has no run {run_id!r}")
    return run


def provenance(ctx: TenantContext, agent_id: uuid.UUID | str, *, limit: int = DEFAULT_LIMIT,
               cursor: str | None = None) -> dict[str, Any]:
    """What each of the agent's runs executed: plan hash, workflow version, skill versions, spend."""
    with session_scope() as s:
        agent = load_agent(s, ctx, agent_id)
        page = paginate(s, select(Run).where(Run.tenant_id == ctx.tenant_id, Run.agent_id == agent.id),
                        created_col=Run.created_at, id_col=Run.id, limit=limit, cursor=cursor, view=lambda r: r)
        wf_ids = {r.workflow_id for r in page["items"] if r.workflow_id is not None}
        workflows = {w.id: w for w in s.scalars(select(Workflow).where(Workflow.id.in_(wf_ids)))} if wf_ids else {}
        items = []
        for r in page["items"]:
            w = workflows.get(r.workflow_id) if r.workflow_id else None
            items.append({
                "run_id": str(r.id), "status": r.status, "plan_hash": r.plan_hash,
                "workflow_id": str(r.workflow_id) if r.workflow_id else None,
                "workflow_name": w.name if w else None, "workflow_version": w.version if w else None,
                "skills": dict(r.skill_versions), "cost_usd": float(r.spent_cost_usd), "tokens": r.spent_tokens,
                "created_at": _iso(r.created_at), "finished_at": _iso(r.finished_at),
            })
        return {"items": items, "next_cursor": page["next_cursor"]}


def get_state(ctx: TenantContext, agent_id: uuid.UUID | str) -> dict[str, Any]:
    with session_scope() as s:
        agent = load_agent(s, ctx, agent_id)
        return {"state": agent.state, "updated_at": _iso(agent.state_updated_at)}


def put_state(ctx: TenantContext, agent_id: uuid.UUID | str, state: dict[str, Any]) -> dict[str, Any]:
    """Replace the agent's state (a JSON object) as a whole."""
    if not isinstance(state, dict):
        raise AosError("VALIDATION_ERROR", "state must be a JSON object",
                       problems=[{"path": "$.state", "code": "VALIDATION_ERROR", "message": "must be an object"}])
    with session_scope() as s:
        agent = load_agent(s, ctx, agent_id)
        now = datetime.now(UTC)
        s.execute(update(Agent).where(Agent.id == agent.id, Agent.tenant_id == ctx.tenant_id)
                  .values(state=state, state_updated_at=now))
        return {"state": state, "updated_at": _iso(now)}
