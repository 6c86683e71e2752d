"""Stored, versioned workflow templates. A change is a new version; a run pins the version it started with."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from aos.db.models import Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import parse_plan
from aos.services.pagination import DEFAULT_LIMIT, paginate
from aos.services.publisher import Publisher
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry

# A workflow is addressed by name in URLs (/workflows/{name}): no slash, no space, no control character.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
NAME_RULE = "1 to 200 letters, digits, '.', '_' or '-', starting with a letter or digit"
_MAX_VERSION = 2**31 - 1  # the column is an int4


def workflow_view(w: Workflow) -> dict[str, Any]:
    return {"id": str(w.id), "name": w.name, "version": w.version, "plan": w.plan, "plan_hash": w.plan_hash,
            "created_at": w.created_at.isoformat() if w.created_at else None}


def _not_found(name: str, version: int | None = None) -> AosError:
    return AosError("NOT_FOUND", f"no workflow {name!r}" + (f" version {version}" if version is not None else ""))


def save_workflow(ctx: TenantContext, name: str, plan_data: Any) -> dict[str, Any]:
    """Validate the plan and store it as the next version of workflow ``name``."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise AosError("VALIDATION_ERROR", f"a workflow name has {NAME_RULE}",
                       problems=[{"path": "$.name", "code": "VALIDATION_ERROR", "message": NAME_RULE}])
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
    """The latest version of workflow ``name``, or the given one."""
    if not NAME.fullmatch(name) or (version is not None and not 1 <= version <= _MAX_VERSION):
        raise _not_found(name, version)
    with session_scope() as s:
        q = select(Workflow).where(Workflow.tenant_id == ctx.tenant_id, Workflow.name == name)
        q = q.where(Workflow.version == version) if version is not None else q.order_by(Workflow.version.desc())
        w = s.scalar(q.limit(1))
        if w is None:
            raise _not_found(name, version)
        return workflow_view(w)


def list_workflows(ctx: TenantContext, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """A page of this tenant's workflows (the latest version of each), most recently saved first."""
    latest = (select(Workflow.name, func.max(Workflow.version).label("version"))
              .where(Workflow.tenant_id == ctx.tenant_id).group_by(Workflow.name).subquery())
    q = select(Workflow).join(latest, (Workflow.name == latest.c.name) & (Workflow.version == latest.c.version)) \
        .where(Workflow.tenant_id == ctx.tenant_id)
    with session_scope() as s:
        return paginate(s, q, created_col=Workflow.created_at, id_col=Workflow.id, limit=limit, cursor=cursor,
                        view=workflow_view)


def list_versions(ctx: TenantContext, name: str) -> list[dict[str, Any]]:
    """Every version of workflow ``name``, newest first; NOT_FOUND when it has none."""
    if not NAME.fullmatch(name):
        raise _not_found(name)
    with session_scope() as s:
        rows = s.scalars(select(Workflow).where(Workflow.tenant_id == ctx.tenant_id, Workflow.name == name)
                         .order_by(Workflow.version.desc())).all()
        if not rows:
            raise _not_found(name)
        return [workflow_view(w) for w in rows]


def run_workflow(ctx: TenantContext, name: str, publisher: Publisher | None, *, version: int | None = None,
                 inputs: dict[str, Any] | None = None, agent_id: uuid.UUID | None = None) -> uuid.UUID:
    """Start a run of a stored workflow (latest version unless one is given)."""
    from aos.services.runs import submit_run

    w = get_workflow(ctx, name, version)
    return submit_run(ctx, w["plan"], publisher, inputs=inputs, agent_id=agent_id,
                      workflow_id=uuid.UUID(w["id"]), scope=f"workflow:{name}")
