"""What the system is doing right now, for an operator: queues, workers, outbox, dead letters, runs.

The broker is reached through ``BrokerInspector`` (the task layer implements it,
like the Publisher), so this service imports no Celery. What a caller sees depends on
who it is (issue 13):

- a tenant sees its own figures only: its outbox, dead letters and active runs, with
  ``queues`` and ``workers`` null (the broker's queues and the workers are shared by
  every tenant: their depth tells one tenant about the others' load) — the broker is
  not even asked;
- the ``operator`` scope sees the deployment: queue depths, live workers, and the
  counts of every tenant together.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from aos.db.models import DeadLetter, OutboxMessage, Run
from aos.db.scope import as_operator
from aos.db.session import session_scope
from aos.services.tenancy import TenantContext


class BrokerInspector(Protocol):
    def queue_depths(self) -> list[dict[str, Any]]:
        """``[{"name", "depth"}]`` for every queue AOS uses; raise when the broker does not answer."""

    def workers(self) -> list[dict[str, Any]]:
        """``[{"name", "last_seen"}]`` of the workers that answered a ping (bounded in time)."""


def inspect_system(ctx: TenantContext, broker: BrokerInspector) -> dict[str, Any]:
    operator = ctx.has("operator")
    errors: list[str] = []
    queues: list[dict[str, Any]] | None = None
    workers: list[dict[str, Any]] | None = None
    if operator:
        try:
            queues = broker.queue_depths()
        except Exception as exc:  # noqa: BLE001 — an unreachable broker is a finding, not a failure of /inspect
            errors.append(f"broker: {type(exc).__name__}: {exc}"[:300])
        try:
            workers = broker.workers()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"workers: {type(exc).__name__}: {exc}"[:300])
    now = datetime.now(UTC)

    def mine(column):  # noqa: ANN001, ANN202 — the operator's figures are the deployment's
        return True if operator else column == ctx.tenant_id

    # the operator's figures cross tenants: read as the operator role (row-level security), a tenant's as itself
    with (as_operator() if operator else nullcontext()), session_scope() as s:
        pending, oldest = s.execute(
            select(func.count(), func.min(OutboxMessage.created_at))
            .where(mine(OutboxMessage.tenant_id), OutboxMessage.status == "pending")).one()
        dead = s.scalar(select(func.count()).select_from(OutboxMessage)
                        .where(mine(OutboxMessage.tenant_id), OutboxMessage.status == "dead"))
        open_dl = s.scalar(select(func.count()).select_from(DeadLetter)
                           .where(mine(DeadLetter.tenant_id), DeadLetter.status == "open"))
        by_status = dict(s.execute(select(Run.status, func.count())
                                   .where(mine(Run.tenant_id), Run.status.in_(("queued", "running")))
                                   .group_by(Run.status)).all())
    return {
        "scope": "deployment" if operator else "tenant",
        "queues": queues,
        "workers": workers,
        "outbox": {"pending": pending, "dead": dead,
                   "oldest_pending_age_s": round((now - oldest).total_seconds(), 3) if oldest else None},
        "dead_letters": {"open": open_dl},
        "runs": {"queued": by_status.get("queued", 0), "running": by_status.get("running", 0)},
        "errors": errors,
        "checked_at": now.isoformat(),
    }
