"""The outbox: the only way a state change reaches the outside world (the broker, webhooks).

Rows are written in the transaction of the change they announce. Delivering one is three steps,
none of which holds a transaction across the network:

1. **claim** (one short transaction): due pending rows are picked with ``FOR UPDATE SKIP LOCKED`` and
   leased — ``attempts`` goes up by one and ``next_attempt_at`` moves to the end of the lease, so no
   other drainer sees the row while it is being delivered, and the pair (attempts, lease end) is the
   fencing token of this attempt;
2. **deliver** outside any transaction: publish a run's Celery chain, or POST a signed webhook
   (at most ``AOS_OUTBOX_CONCURRENCY`` at once per drainer);
3. **settle** (one short transaction, fenced): delivered; or pending again after an exponential backoff
   with full jitter; or, after the last attempt, ``dead`` plus a dead letter of kind ``outbox`` in the
   same transaction. A drainer whose lease ran out settles nothing: the row belongs to the next claim.

A run enqueue never dies: the broker being down only delays the run (the reaper backs this up).
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db import direct
from aos.db.models import DeadLetter, OutboxMessage, Run, Tenant
from aos.db.run_store import EnqueueRow
from aos.db.session import session_scope
from aos.db.statements import Statement
from aos.errors import AosError
from aos.runtime.backoff import retry_countdown
from aos.runtime.catalog import CATALOG
from aos.services import enqueue, webhooks
from aos.services.publisher import Publisher
from aos.values import RetryPolicy

log = logging.getLogger(__name__)

ENQUEUE = enqueue.ENQUEUE
NO_ENDPOINT = "no webhook endpoint configured"


@dataclass(frozen=True)
class Claimed:
    """A leased row: ``attempts`` (this attempt's number) and ``lease_until`` fence its settlement."""

    id: int
    tenant_id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    attempts: int
    lease_until: datetime
    created_at: datetime


@dataclass
class Delivery:
    """What to do with one claimed row."""

    row: Claimed
    note: str | None = None                                   # nothing to send: delivered with this note
    publish: tuple[str, int, list[float]] | None = None       # (run id, from step, step timeouts)
    webhook: webhooks.WebhookRequest | None = None
    failure: webhooks.DeliveryResult | None = None            # known to fail before sending


def lease_seconds() -> float:
    """How long a claimed row stays hidden: never shorter than a slow webhook POST can take."""
    settings = get_settings()
    return max(settings.outbox_lease_s, 4 * settings.webhook_timeout_s + 10)


def backoff_s(outbox_id: int, attempt: int) -> float:
    """The wait after failed attempt ``attempt``: the one backoff formula, seeded by the row and attempt."""
    settings = get_settings()
    policy = RetryPolicy(max_attempts=settings.outbox_max_attempts, backoff_s=settings.outbox_backoff_s,
                         backoff_max_s=settings.outbox_backoff_max_s)
    return retry_countdown("outbox", str(outbox_id), attempt, policy, cap_s=settings.outbox_backoff_max_s)


# --- claim --------------------------------------------------------------------------------------------


def claim(limit: int, only_id: int | None = None) -> list[Delivery]:
    """Lease up to ``limit`` due rows (or just row ``only_id`` if it is due) and prepare what to do with each,
    in one short transaction."""
    with session_scope() as s:
        due = select(OutboxMessage.id).where(OutboxMessage.status == "pending",
                                             OutboxMessage.next_attempt_at <= func.now())
        if only_id is not None:
            due = due.where(OutboxMessage.id == only_id)
        due = due.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit) \
            .with_for_update(skip_locked=True)
        lease = timedelta(seconds=lease_seconds())
        rows = s.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(due.scalar_subquery()))
            .values(attempts=OutboxMessage.attempts + 1, next_attempt_at=func.now() + lease)
            .returning(OutboxMessage.id, OutboxMessage.tenant_id, OutboxMessage.topic, OutboxMessage.payload,
                       OutboxMessage.attempts, OutboxMessage.next_attempt_at, OutboxMessage.created_at)
            .execution_options(synchronize_session=False)).all()
        claimed = sorted((Claimed(*r) for r in rows), key=lambda c: (c.topic != ENQUEUE, c.id))
        tenants: dict[uuid.UUID, tuple[str | None, str | None]] = {}
        hook_tenants = {c.tenant_id for c in claimed if c.topic != ENQUEUE}
        if hook_tenants:
            tenants = {t: (url, secret) for t, url, secret in s.execute(
                select(Tenant.id, Tenant.webhook_url, Tenant.webhook_secret).where(Tenant.id.in_(hook_tenants)))}
        return [_prepare_safely(s, c, tenants) for c in claimed]


def _prepare_safely(s: Session, c: Claimed, tenants: dict[uuid.UUID, tuple[str | None, str | None]]) -> Delivery:
    # One unreadable row (a run whose plan no longer parses) costs its own attempt, never the whole batch.
    try:
        with s.begin_nested():
            return _prepare(s, c, tenants)
    except Exception as exc:  # noqa: BLE001
        log.exception("outbox %s (%s): cannot prepare the delivery", c.id, c.topic)
        return Delivery(c, failure=webhooks.DeliveryResult(False, CATALOG.match(exc).code,
                                                           f"{type(exc).__name__}: {exc}"[:1000]))


def _prepare(s: Session, c: Claimed, tenants: dict[uuid.UUID, tuple[str | None, str | None]]) -> Delivery:
    if c.topic == ENQUEUE:
        run_id = uuid.UUID(c.payload["run_id"])
        status, revision = s.execute(select(Run.status, Run.plan_revision).where(Run.id == run_id)).one_or_none() \
            or (None, 0)
        # the revision: the step timeouts the messages carry come from the plan as a person may have amended it
        rp = enqueue.run_plan(run_id, revision=revision) if status in ("queued", "running") else None
        if rp is None:
            return Delivery(c, note="run no longer queued; nothing to publish")
        return Delivery(c, publish=(str(run_id), int(c.payload.get("from_step", 0)), list(rp.timeouts)))
    url, secret = tenants.get(c.tenant_id, (None, None))
    if not url:
        return Delivery(c, note=NO_ENDPOINT)
    if not secret:
        return Delivery(c, failure=webhooks.DeliveryResult(
            False, "CONFIG_INVALID", "the tenant has a webhook url but no signing secret; create one with "
            "POST /api/v1/webhook/rotate-secret", final=True))
    body = webhooks.body_for(c.id, c.topic, c.payload, c.created_at)
    return Delivery(c, webhook=webhooks.WebhookRequest(url=url, secret=secret, outbox_id=c.id, topic=c.topic,
                                                   body=body, attempt=c.attempts))


# --- deliver --------------------------------------------------------------------------------------------


def _send_webhook(req: webhooks.WebhookRequest) -> webhooks.DeliveryResult:
    try:
        return webhooks.deliver(req, get_settings().webhook_timeout_s)
    except Exception as exc:  # noqa: BLE001 — a bug must cost one attempt, not the drainer
        log.exception("webhook %s: unexpected error", req.outbox_id)
        return webhooks.DeliveryResult(False, CATALOG.match(exc).code, f"{type(exc).__name__}: {exc}"[:1000])


def _run_inline(job: Delivery, publisher: Publisher) -> webhooks.DeliveryResult:
    if job.note is not None:
        return webhooks.DeliveryResult(True)
    if job.failure is not None:
        return job.failure
    if job.webhook is not None:
        return _send_webhook(job.webhook)
    assert job.publish is not None
    run_id, from_step, timeouts = job.publish
    try:
        publisher.enqueue_run(run_id, from_step, timeouts, generation=job.row.id)
    except Exception as exc:  # noqa: BLE001 — the broker is down (or refused): the row stays pending
        log.warning("outbox %s: could not publish run %s: %s", job.row.id, run_id, exc)
        return webhooks.DeliveryResult(False, CATALOG.match(exc).code, f"{type(exc).__name__}: {exc}"[:1000])
    return webhooks.DeliveryResult(True)


# --- settle ---------------------------------------------------------------------------------------------


def settle(row: Claimed, result: webhooks.DeliveryResult, note: str | None = None) -> bool:
    """Record one attempt's outcome, fenced by this attempt's token; True when the row is now delivered."""
    if result.ok:
        done = _mark_delivered(row, note)
        if done:
            metrics.outbox_delivery(row.topic, "delivered")
        return done
    settings = get_settings()
    fence = (OutboxMessage.id == row.id, OutboxMessage.status == "pending",
             OutboxMessage.attempts == row.attempts, OutboxMessage.next_attempt_at == row.lease_until)
    with session_scope() as s:
        code = result.code if result.code in CATALOG else CATALOG.fallback.code
        error = f"{code}: {result.message or ''}"[:2000]
        dead = row.topic != ENQUEUE and (result.final or row.attempts >= settings.outbox_max_attempts)
        if dead:
            if _update(s, fence, status="dead", last_error=error):
                s.add(DeadLetter(
                    tenant_id=row.tenant_id, kind="outbox", run_id=_run_id(row.payload), step_id=None,
                    payload={"outbox_id": row.id, "topic": row.topic, "event": row.payload,
                             "last_status": result.status},
                    error_code=code, error_message=result.message, attempts=row.attempts))
                metrics.outbox_delivery(row.topic, "dead")
                metrics.dead_letter_created("outbox")
                log.warning("outbox %s (%s) is dead after %d attempts: %s", row.id, row.topic, row.attempts, error)
            return False
        delay = backoff_s(row.id, row.attempts)
        if result.retry_after_s is not None:  # the receiver said when to come back
            delay = max(delay, min(result.retry_after_s, settings.outbox_backoff_max_s))
        if _update(s, fence, next_attempt_at=func.now() + timedelta(seconds=delay), last_error=error):
            metrics.outbox_delivery(row.topic, "retry")
            log.info("outbox %s (%s) attempt %d failed (%s); next in %.2fs", row.id, row.topic, row.attempts,
                     code, delay)
        return False


_DELIVERED = Statement("""
UPDATE outbox SET status = 'delivered', delivered_at = now(), last_error = %(note)s
WHERE id = %(id)s AND status = 'pending' AND attempts = %(attempts)s AND next_attempt_at = %(lease_until)s
""")


def _mark_delivered(row: Claimed, note: str | None) -> bool:
    # A relaxed commit: were it lost in a crash, the row would simply be delivered again (a duplicate
    # chain is harmless, a webhook carries its stable AOS-Webhook-Id), so it need not wait for the disk.
    with direct.relaxed() as conn:
        touched = _DELIVERED.run(conn, id=row.id, attempts=row.attempts, lease_until=row.lease_until, note=note)
    if touched == 0:
        log.warning("outbox row settled by nobody: its lease ran out and another drainer claimed it")
        return False
    return True


def _update(s: Session, fence: tuple[Any, ...], **values: Any) -> bool:
    res = s.execute(update(OutboxMessage).where(*fence).values(**values)
                    .execution_options(synchronize_session=False))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        log.warning("outbox row settled by nobody: its lease ran out and another drainer claimed it")
        return False
    return True


def _run_id(payload: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(payload.get("run_id")))
    except ValueError:
        return None


# --- the entry points ------------------------------------------------------------------------------------


def publish_leased(tenant_id: uuid.UUID, run_id: uuid.UUID, row: EnqueueRow, publisher: Publisher,
                   timeouts: list[float]) -> bool:
    """Publish a run whose enqueue row was born leased to this process (``run_store.insert_run``), and
    settle the row; the drain takes over if this process dies first."""
    claimed = Claimed(id=row.id, tenant_id=tenant_id, topic=ENQUEUE, payload=enqueue.enqueue_payload(run_id, 0),
                      attempts=row.attempts, lease_until=row.lease_until, created_at=row.created_at)
    job = Delivery(claimed, publish=(str(run_id), 0, timeouts))
    return settle(claimed, _run_inline(job, publisher))


def deliver_one(outbox_id: int, publisher: Publisher) -> bool:
    """Deliver a row right after the transaction that wrote it (nothing happens if a drainer holds it)."""
    jobs = claim(1, only_id=outbox_id)
    if not jobs:
        return False
    job = jobs[0]
    return settle(job.row, _run_inline(job, publisher), job.note)


def drain_outbox(publisher: Publisher, limit: int | None = None) -> int:
    """Deliver due rows (at most ``limit``, default AOS_OUTBOX_BATCH); return how many were delivered.

    Run enqueues are published in this thread; webhooks go to a pool of AOS_OUTBOX_CONCURRENCY threads,
    and rows are claimed only as threads free up, so a lease covers one POST, not a queue of them. Every
    database call stays in this thread, in short transactions.
    """
    settings = get_settings()
    limit = settings.outbox_batch if limit is None else limit
    width = max(1, settings.outbox_concurrency)
    delivered = claimed = 0
    exhausted = False
    with ThreadPoolExecutor(width, thread_name_prefix="aos-outbox") as pool:
        inflight: dict[Future[webhooks.DeliveryResult], Claimed] = {}
        while True:
            want = min(width - len(inflight), limit - claimed)
            if want > 0 and not exhausted:
                jobs = claim(want)
                claimed += len(jobs)
                exhausted = len(jobs) < want
                for job in jobs:
                    if job.webhook is not None and job.failure is None:
                        inflight[pool.submit(_send_webhook, job.webhook)] = job.row
                    else:
                        delivered += settle(job.row, _run_inline(job, publisher), job.note)
                if jobs:
                    continue
            if not inflight:
                break
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for future in done:
                delivered += settle(inflight.pop(future), future.result())
    return delivered


def reopen(s: Session, outbox_id: int) -> str:
    """Make a dead row pending again with a fresh set of attempts (a dead letter's replay). Its id, hence
    its ``AOS-Webhook-Id``, stays the same. Returns ``requeued``, or ``superseded`` if it is not dead."""
    row = s.get(OutboxMessage, outbox_id, with_for_update=True)
    if row is None:
        raise AosError("DEAD_LETTER_NOT_REPLAYABLE", f"outbox row {outbox_id} no longer exists (retention)")
    if row.status != "dead":
        return "superseded"
    row.status, row.attempts, row.next_attempt_at = "pending", 0, datetime.now(UTC)
    row.last_error = f"replayed after: {row.last_error or ''}"[:2000]
    return "requeued"
