"""An agent's capability policy checked against a plan, before anything runs.

Submission refuses a plan with any problem (``CAPABILITY_DENIED``); the simulator
reports the same problems as a verdict. Both call ``capability_problems``, so they
can never disagree. Only what is literal in the plan can be judged here: an URL or
a connection name built from an earlier step's output is checked again by the
skill at execution, which is the guarantee.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from aos.db.models import Agent
from aos.errors import AosError
from aos.plan import Plan
from aos.plan.refs import has_references
from aos.services.tenancy import TenantContext
from aos.skills.ssrf import host_matches


def load_agent(s: Session, ctx: TenantContext, agent_id: uuid.UUID | str) -> Agent:
    """This tenant's agent; NOT_FOUND for any other (another tenant's agent is never confirmed)."""
    try:
        aid = uuid.UUID(str(agent_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no agent {agent_id!r}") from None
    agent = s.scalar(select(Agent).where(Agent.id == aid, Agent.tenant_id == ctx.tenant_id))
    if agent is None:
        raise AosError("NOT_FOUND", f"no agent {agent_id!r}")
    return agent


def capability_problems(agent: Agent, plan: Plan) -> list[dict[str, str]]:
    """Every way ``plan`` breaks ``agent``'s policy, each with its JSON path (empty: allowed)."""
    caps = agent.capabilities or {}
    allowed, hosts, conns = caps.get("allowed_skills"), caps.get("http_hosts"), caps.get("db_connections")
    problems: list[dict[str, str]] = []

    def deny(path: str, message: str) -> None:
        problems.append({"path": path, "code": "CAPABILITY_DENIED", "message": f"agent {agent.name!r} {message}"})

    for st in plan.steps:
        path = f"$.steps[{st.index}]"
        calls = [(st.skill, st.args, path)]
        if st.on_error.fallback:
            calls.append((str(st.on_error.fallback.get("skill", "")), st.on_error.fallback.get("args") or {},
                          f"{path}.on_error.fallback"))
        for skill, args, where in calls:
            args = args if isinstance(args, dict) else {}
            name = skill.split("@")[0]
            if allowed is not None and name not in allowed:
                deny(f"{where}.skill", f"may not use {skill}")
            for key in ("url", "base_url"):
                host = _literal_host(args.get(key))
                if hosts is not None and host and not any(host_matches(host, p) for p in hosts):
                    deny(f"{where}.args.{key}", f"may not reach host {host!r} (capability http_hosts)")
            conn = args.get("connection") if name == "postgres.query" else None
            if conns is not None and isinstance(conn, str) and not has_references(conn) and conn not in conns:
                deny(f"{where}.args.connection", f"may not use database connection {conn!r}")
    max_cost = caps.get("max_cost_usd")
    if max_cost is not None and (plan.budget.max_cost_usd is None or plan.budget.max_cost_usd > max_cost):
        deny("$.budget.max_cost_usd", f"may spend at most {max_cost} USD per run; set budget.max_cost_usd within it")
    return problems


def _literal_host(url: Any) -> str | None:
    if not isinstance(url, str) or has_references(url):
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def raise_if_denied(problems: list[dict[str, str]]) -> None:
    if problems:
        first = problems[0]
        raise AosError("CAPABILITY_DENIED", f"{first['path']}: {first['message']}", problems=problems)
