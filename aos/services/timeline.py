"""Run events (the timeline) and outbox rows, written inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from aos.db.models import OutboxMessage, RunEvent

# The closed set of event types; metrics and docs take their labels from here.
EVENT_TYPES = (
    "run.queued", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.resumed",
    "step.started", "step.succeeded", "step.retrying", "step.failed", "step.skipped", "step.fallback",
    "step.redelivered", "budget.warning", "budget.exceeded",
)
# Events that also leave as webhooks through the outbox.
WEBHOOK_EVENTS = frozenset({"run.succeeded", "run.failed", "budget.warning"})


def record(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, type_: str, *,
           step_id: str | None = None, **data: Any) -> None:
    assert type_ in EVENT_TYPES, type_
    session.add(RunEvent(tenant_id=tenant_id, run_id=run_id, type=type_, step_id=step_id, data=data))
    if type_ in WEBHOOK_EVENTS:
        session.add(OutboxMessage(tenant_id=tenant_id, topic=type_,
                                  payload={"run_id": str(run_id), "event": type_,
                                           "data": {**data, **({"step_id": step_id} if step_id else {})}}))
