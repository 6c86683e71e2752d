"""Stored, versioned workflow templates. A change is a new version; a run pins the version it started with."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from aos.db.models import Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import parse_plan
from aos.services.publisher import Publisher
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry


def workflow_view(w: Workflow) -> dict[str, Any]:
    return {"id": str(w.id), "name": w.name, "version": w.version, "plan": w.plan, "plan_hash": w.plan_hash,
            "created_at": w.created_at.isoformat() if w.created_at else None}


def save_workflow(ctx: TenantContext, name: str, plan_data: Any) -> dict[str, Any]:
    """Validate the plan and store it as the next version of workflow ``name``."""
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise AosError("VALIDATION_ERROR", "a workflow name has 1 to 200 characters")
    plan = parse_plan(plan_data, default_registry())
    with session_scope() as s:
        latest = s.scalar(select(func.max(Workflow.version)).where(Workflow.tenant_id == ctx.tenant_id,
                                                                  Workflow.name == name)) or 0
        w = Workflow(tenant_id=ctx.tenant_id, name=name, version=latest + 1, plan=plan.raw, plan_hash=plan.hash)
        s.add(w)
        try:
            s.flush()
        except IntegrityError:  # two saves raced for the same version number
            raise AosError("CONFLICT", f"workflow {name!r} changed meanwhile; save again") from None
        return workflow_view(w)


def get_workflow(ctx: TenantContext, name: str, version: int | None = None) -> dict[str, Any]:
    with session_scope() as s:
        q = select(Workflow).where(Workflow.tenant_id == ctx.tenant_id, Workflow.name == name)
        q = q.where(Workflow.version == version) if version is not None else q.order_by(Workflow.version.desc())
        w = s.scalar(q.limit(1))
        if w is None:
            raise AosError("NOT_FOUND", f"no workflow {name!r}" + (f" version {version}" if version else ""))
        return workflow_view(w)


def run_workflow(ctx: TenantContext, name: str, publisher: Publisher | None, *, version: int | None = None,
                 inputs: dict[str, Any] | None = None, agent_id: uuid.UUID | None = None) -> uuid.UUID:
    """Start a run of a stored workflow (latest version unless one is given)."""
    from aos.services.runs import submit_run

    w = get_workflow(ctx, name, version)
    return submit_run(ctx, w["plan"], publisher, inputs=inputs, agent_id=agent_id,
                      workflow_id=uuid.UUID(w["id"]))
