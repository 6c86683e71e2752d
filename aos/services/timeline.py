"""Run events (the timeline) and the webhook outbox rows some of them imply.

``entries`` is the one place that says which rows an event makes: a ``run_events`` row
always, and an outbox row for the events that leave as webhooks. The step path sends those
rows with its own statements (``aos.db.step_store``); every other caller records them inside
its session's transaction with ``record``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from aos.db.models import RUN_EVENT_TYPES, WEBHOOK_EVENTS, OutboxMessage, RunEvent

EVENT_TYPES = RUN_EVENT_TYPES
_WEBHOOKS = frozenset(WEBHOOK_EVENTS)


@dataclass
class Entries:
    """Rows to insert for a run, in order: events (``type``, ``step_id``, ``data``) and outbox rows
    (``topic``, ``payload``)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def add(self, run_id: uuid.UUID | str, type_: str, *, step_id: str | None = None, **data: Any) -> None:
        assert type_ in RUN_EVENT_TYPES, type_
        self.events.append({"type": type_, "step_id": step_id, "data": data})
        if type_ in _WEBHOOKS:
            self.outbox.append({"topic": type_, "payload": {
                "run_id": str(run_id), "event": type_, "data": {**data, **({"step_id": step_id} if step_id else {})}}})


def record(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, type_: str, *,
           step_id: str | None = None, **data: Any) -> None:
    """Add one event (and its webhook row) to the session's transaction."""
    rows = Entries()
    rows.add(run_id, type_, step_id=step_id, **data)
    for e in rows.events:
        session.add(RunEvent(tenant_id=tenant_id, run_id=run_id, type=e["type"], step_id=e["step_id"], data=e["data"]))
    for o in rows.outbox:
        session.add(OutboxMessage(tenant_id=tenant_id, topic=o["topic"], payload=o["payload"]))
