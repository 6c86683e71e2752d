"""The reaper: resumes runs whose worker died.

A run is silent when it is queued or running, nobody holds a live lease on it,
no retry wake-up is due, and nothing changed for AOS_REAPER_GRACE_S. Its next
step has no live message (or its message is lost): re-publish from the first
unfinished step. A duplicate publish is harmless — steps are idempotent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, cast, or_, select

from aos.config import get_settings
from aos.db.models import OutboxMessage, Run
from aos.db.session import session_scope
from aos.services.runs import requeue

log = logging.getLogger(__name__)


def reap_silent_runs(limit: int = 100) -> int:
    grace = timedelta(seconds=get_settings().reaper_grace_s)
    now = datetime.now(UTC)
    reaped = 0
    with session_scope() as s:
        pending_enqueue = select(OutboxMessage.id).where(
            OutboxMessage.topic == "run.enqueue", OutboxMessage.status == "pending",
            OutboxMessage.payload["run_id"].astext == cast(Run.id, String)).exists()
        runs = s.scalars(
            select(Run).where(
                Run.status.in_(("queued", "running")),
                Run.updated_at < now - grace,
                or_(Run.lease_expires_at.is_(None), Run.lease_expires_at < now),
                or_(Run.wake_at.is_(None), Run.wake_at < now - grace),
                ~pending_enqueue,
            ).order_by(Run.updated_at).limit(limit).with_for_update(skip_locked=True)).all()
        for run in runs:
            log.warning("reaper: run %s silent since %s at step %d; re-publishing", run.id, run.updated_at,
                        run.next_step)
            requeue(s, run, reason="reaper")
            reaped += 1
    return reaped
