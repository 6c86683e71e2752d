"""What the system is doing right now, for an operator: queues, workers, outbox, dead letters, runs.

The broker is reached through ``BrokerInspector`` (the task layer implements it,
like the Publisher), so this service imports no Celery. Counts read from Postgres
are this tenant's only; queue depths and live workers describe the shared
infrastructure, without any per-tenant breakdown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from aos.db.models import DeadLetter, OutboxMessage, Run
from aos.db.session import session_scope
from aos.services.tenancy import TenantContext


class BrokerInspector(Protocol):
    def queue_depths(self) -> list[dict[str, Any]]:
        """``[{"name", "depth"}]`` for every queue AOS uses; raise when the broker does not answer."""

    def workers(self) -> list[dict[str, Any]]:
        """``[{"name", "last_seen"}]`` of the workers that answered a ping (bounded in time)."""


def inspect_system(ctx: TenantContext, broker: BrokerInspector) -> dict[str, Any]:
    errors: list[str] = []
    queues: list[dict[str, Any]] | None
    workers: list[dict[str, Any]] | None
    try:
        queues = broker.queue_depths()
    except Exception as exc:  # noqa: BLE001 — an unreachable broker is a finding, not a failure of /inspect
        queues = None
        errors.append(f"broker: {type(exc).__name__}: {exc}"[:300])
    try:
        workers = broker.workers()
    except Exception as exc:  # noqa: BLE001
        workers = None
        errors.append(f"workers: {type(exc).__name__}: {exc}"[:300])
    now = datetime.now(UTC)
    with session_scope() as s:
        pending, oldest = s.execute(
            select(func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.tenant_id == ctx.tenant_id, OutboxMessage.status == "pending")).one()
        dead = s.scalar(select(func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.tenant_id == ctx.tenant_id, OutboxMessage.status == "dead"))
        open_dl = s.scalar(select(func.count()).select_from(DeadLetter)
                           .where(DeadLetter.tenant_id == ctx.tenant_id, DeadLetter.status == "open"))
        by_status = dict(s.execute(select(Run.status, func.count())
                                   .where(Run.tenant_id == ctx.tenant_id, Run.status.in_(("queued", "running")))
                                   .group_by(Run.status)).all())
    return {
        "queues": queues,
        "workers": workers,
        "outbox": {"pending": pending, "dead": dead,
                   "oldest_pending_age_s": round((now - oldest).total_seconds(), 3) if oldest else None},
        "dead_letters": {"open": open_dl},
        "runs": {"queued": by_status.get("queued", 0), "running": by_status.get("running", 0)},
        "errors": errors,
        "checked_at": now.isoformat(),
    }
