"""Run events (the timeline) and the webhook outbox rows some of them imply.

Writing: ``Entries`` is the one place that says which rows an event makes: a ``run_events`` row,
and an outbox row for the events that leave as webhooks. The step path sends those rows with its
own statements (``aos.db.step_store``); every other caller records them inside its session's
transaction with ``record``.

Reading: ``events_of``. The two events every step has — ``step.started`` when an attempt opens
and ``step.succeeded`` when it succeeds plainly — are not rows of their own: their ids are drawn
from the same sequence as ``run_events.id`` when the attempt opens and ends, and kept with the
attempt — on the run row while it runs, on its checkpoint once it ended — whose columns also carry
their data. So the step path writes two rows fewer per step, and the timeline is still one
sequence of events ordered by id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
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


_EVENTS = text("""
SELECT id, type, step_id, data, created_at FROM (
    SELECT id, type, step_id, data, created_at FROM run_events WHERE run_id = :run AND id > :after
    UNION ALL
    SELECT started_event_id, 'step.started', step_id, jsonb_build_object('attempt', attempt, 'worker', worker),
           started_at
    FROM checkpoints WHERE run_id = :run AND started_event_id > :after
    UNION ALL
    SELECT finished_event_id, 'step.succeeded', step_id,
           jsonb_build_object('attempt', attempt, 'duration_ms', duration_ms::float8, 'cost_usd', cost_usd::float8),
           finished_at
    FROM checkpoints WHERE run_id = :run AND finished_event_id > :after
    UNION ALL
    SELECT attempt_event_id, 'step.started', plan->'steps'->next_step->>'id',
           jsonb_build_object('attempt', attempt, 'worker', lease_owner), attempt_started_at
    FROM runs WHERE id = :run AND attempt_open AND attempt_event_id > :after
) AS timeline ORDER BY id LIMIT :limit
""")


def events_of(session: Session, run_id: uuid.UUID, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
    """The run's timeline after event ``after_id``, in order: ``{id, type, step_id, data, at}`` each."""
    rows = session.execute(_EVENTS, {"run": run_id, "after": after_id, "limit": limit}).all()
    return [{"id": r.id, "type": r.type, "step_id": r.step_id, "data": r.data,
             "at": r.created_at.isoformat() if r.created_at else None} for r in rows]
