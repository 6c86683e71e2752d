"""The outbox: the only way a state change reaches the outside world (the broker, webhooks).

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so any number of drainers is
safe; a row stays pending until its handler succeeds, so a broker that was down
when a run was accepted only delays the run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aos.db.models import OutboxMessage, Run, Tenant
from aos.db.session import session_scope
from aos.services.publisher import Publisher

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20


def _handle(s: Session, msg: OutboxMessage, publisher: Publisher) -> str | None:
    """Deliver one message; return a note for the row, raise to retry later."""
    if msg.topic == "run.enqueue":
        run = s.get(Run, uuid.UUID(msg.payload["run_id"]))
        if run is None or run.status not in ("queued", "running"):
            return "run no longer queued; nothing to publish"
        from aos.services.execution import load_plan
        from aos.services.runs import step_timeouts

        publisher.enqueue_run(str(run.id), int(msg.payload.get("from_step", 0)), step_timeouts(load_plan(run)),
                              generation=msg.id)
        return None
    # Webhook topics: delivery to tenant endpoints comes with the webhook processor.
    tenant = s.get(Tenant, msg.tenant_id)
    if tenant is None or not tenant.webhook_url:
        return "no webhook endpoint configured"
    raise RuntimeError("webhook delivery is not enabled in this build")


def _settle(s: Session, msg: OutboxMessage, publisher: Publisher) -> bool:
    try:
        note = _handle(s, msg, publisher)
    except Exception as exc:  # noqa: BLE001 — any failure leaves the row pending with a backoff
        attempts = msg.attempts + 1
        delay = min(300.0, 2.0 ** min(attempts, 8))
        s.execute(update(OutboxMessage).where(OutboxMessage.id == msg.id).values(
            attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:2000],
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
            status="dead" if attempts >= MAX_ATTEMPTS else "pending"))
        log.warning("outbox %s (%s) failed, attempt %d: %s", msg.id, msg.topic, attempts, exc)
        return False
    s.execute(update(OutboxMessage).where(OutboxMessage.id == msg.id).values(
        status="delivered", delivered_at=datetime.now(UTC), attempts=msg.attempts + 1, last_error=note))
    return True


def deliver_one(outbox_id: int, publisher: Publisher) -> bool:
    """Deliver a row right after the transaction that wrote it (skipped if a drainer holds it)."""
    with session_scope() as s:
        msg = s.scalar(select(OutboxMessage).where(OutboxMessage.id == outbox_id,
                                                   OutboxMessage.status == "pending")
                       .with_for_update(skip_locked=True))
        if msg is None:
            return False
        return _settle(s, msg, publisher)


def drain_outbox(publisher: Publisher, limit: int = 100) -> int:
    """Deliver due pending rows; return how many were delivered."""
    delivered = 0
    with session_scope() as s:
        rows = s.scalars(select(OutboxMessage)
                         .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= datetime.now(UTC))
                         .order_by(OutboxMessage.id).limit(limit).with_for_update(skip_locked=True)).all()
        for msg in rows:
            delivered += _settle(s, msg, publisher)
    return delivered
