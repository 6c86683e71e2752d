"""Agents: named actors of a tenant with a capability policy."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from aos.db.models import Agent
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.tenancy import TenantContext

CAPABILITY_KEYS = {"allowed_skills": list, "http_hosts": list, "db_connections": list, "max_cost_usd": (int, float)}


def create_agent(ctx: TenantContext, name: str, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    caps = capabilities or {}
    problems = []
    for k, v in caps.items():
        expected = CAPABILITY_KEYS.get(k)
        if expected is None:
            problems.append({"path": f"$.capabilities.{k}", "code": "VALIDATION_ERROR",
                             "message": f"unknown capability; known: {', '.join(sorted(CAPABILITY_KEYS))}"})
        elif not isinstance(v, expected) or isinstance(v, bool):
            problems.append({"path": f"$.capabilities.{k}", "code": "VALIDATION_ERROR", "message": "wrong type"})
    if problems:
        raise AosError("VALIDATION_ERROR", f"{problems[0]['path']}: {problems[0]['message']}", problems=problems)
    with session_scope() as s:
        agent = Agent(tenant_id=ctx.tenant_id, name=name, capabilities=caps)
        s.add(agent)
        try:
            s.flush()
        except IntegrityError:
            raise AosError("CONFLICT", f"an agent named {name!r} already exists") from None
        return {"id": str(agent.id), "name": agent.name, "capabilities": agent.capabilities}
