"""The reaper: resumes runs whose worker died or whose step message was lost.

(Also golden replays whose worker died before re-enacting a recorded amendment:
``aos.services.replay_amendments.reenact_stranded``.)

A run is silent when it is queued or running, nobody holds a live lease on it,
no retry wake-up is due, no enqueue is pending in the outbox, and nothing changed
for AOS_REAPER_GRACE_S. Silence alone does not mean the message is gone: behind a
backlog longer than the grace, a run's message is only waiting its turn, and
re-publishing it would add one more message per waiting run per grace period —
the backlog would feed itself exactly when the system is busiest. So the reaper
asks the broker which of the silent runs still have a message in the step queue
(``StepQueue``) and re-publishes only the others. A broker that cannot look into
its queue (AMQP) says so; then, while the queue holds a backlog, a run is taken
as lost only after ``OPAQUE_BACKLOG_FACTOR`` grace periods of silence.

A duplicate publish is still harmless — steps are idempotent — this only keeps
the work from multiplying.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session

from aos.config import get_settings
from aos.db import direct
from aos.db.models import ENQUEUE_TOPIC, OutboxMessage, Run
from aos.db.session import session_scope
from aos.services import concurrency, replay_amendments
from aos.services.enqueue import requeue

log = logging.getLogger(__name__)

# Under a backlog the broker cannot see into, how many grace periods of silence make a run lost.
OPAQUE_BACKLOG_FACTOR = 10


class StepQueue(Protocol):
    """The broker's view of the step queue (the task layer implements it)."""

    def runs_waiting(self, run_ids: Collection[str]) -> set[str] | None:
        """Those of ``run_ids`` that have a message waiting in the step queue; ``None`` when the broker
        holds a backlog it cannot look into (an empty queue is an empty set, on any broker)."""


def _silent(now: datetime, silent_for: timedelta) -> list[Any]:
    """The conditions that make a run silent for ``silent_for``."""
    pending_enqueue = select(OutboxMessage.id).where(
        OutboxMessage.topic == ENQUEUE_TOPIC, OutboxMessage.status == "pending",
        OutboxMessage.payload["run_id"].astext == cast(Run.id, String)).exists()
    return [Run.status.in_(("queued", "running")),
            Run.waiting_since.is_(None),  # a run waiting for a concurrency slot has no message to lose
            Run.updated_at < now - silent_for,
            or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now),
            or_(Run.wake_at.is_(None), Run.wake_at < now - silent_for),
            ~pending_enqueue]


def reap_silent_runs(limit: int = 100, step_queue: StepQueue | None = None) -> int:
    """Re-publish up to ``limit`` silent runs whose step message is not waiting in the queue.
    Without ``step_queue`` every silent run is taken as lost. Also gives free concurrency slots to
    waiting runs (a raised cap; a run that ended by a path that had no limit when it was queued): their
    enqueues are then due for the outbox drain."""
    admitted = concurrency.admit_all_waiting(direct.durable)
    if admitted:
        log.info("reaper: %d waiting runs given a free concurrency slot", len(admitted))
    # a golden replay whose worker died before re-enacting its recorded amendment (its enqueue goes through the
    # outbox, which the drain publishes)
    replay_amendments.reenact_stranded(get_settings().reaper_grace_s, None)
    grace = timedelta(seconds=get_settings().reaper_grace_s)
    now = datetime.now(UTC)
    with session_scope() as s:
        candidates = [str(i) for i in s.scalars(
            select(Run.id).where(*_silent(now, grace)).order_by(Run.updated_at).limit(limit))]
    if not candidates:
        return 0
    # Asked outside any transaction: no row lock is held while the broker answers.
    waiting = step_queue.runs_waiting(candidates) if step_queue is not None else set()
    if waiting is None:
        silent_for = grace * OPAQUE_BACKLOG_FACTOR
        log.info("reaper: the step queue holds a backlog the broker cannot look into; only runs silent "
                 "for %ss are taken as lost", silent_for.total_seconds())
        waiting = set()
    else:
        silent_for = grace
        if waiting:
            log.info("reaper: %d silent runs still have a message in the step queue; left to it", len(waiting))
    lost = [uuid.UUID(r) for r in candidates if r not in waiting]
    if not lost:
        return 0
    with session_scope() as s:
        return _requeue_still_silent(s, lost, now, silent_for)


def _requeue_still_silent(s: Session, run_ids: list[uuid.UUID], now: datetime, silent_for: timedelta) -> int:
    # Re-checked under the row lock: a worker may have claimed a run since the broker was asked.
    runs = s.scalars(select(Run).where(Run.id.in_(run_ids), *_silent(now, silent_for))
                     .order_by(Run.updated_at).with_for_update(skip_locked=True)).all()
    for run in runs:
        log.warning("reaper: run %s silent since %s at step %d; re-publishing", run.id, run.updated_at,
                    run.next_step)
        requeue(s, run, reason="reaper")
    return len(runs)
