"""Dead letters: work that ran out of retries, kept with its error until replayed, discarded or archived.

Three kinds:

- ``step``: a step whose retryable failure outlived its attempts (written by ``execution._finish``; the
  run is ``failed``). Replay resumes the run from that step.
- ``outbox``: a webhook whose last delivery attempt failed (written by ``outbox._settle``). Replay makes
  the outbox row pending again, same id, so the receiver sees the same ``AOS-Webhook-Id``.
- ``task``: a Celery task that crashed (written by the ``task_failure`` handler in ``aos.tasks.dlq``).
  A run's task replays by re-publishing the run from its first unfinished step; a periodic job's does not
  replay (beat runs it again anyway) and is refused with DEAD_LETTER_NOT_REPLAYABLE.

A replay happens once, however often it is asked and by how many processes at once: the first thing it
does is ``INSERT INTO replay_log … ON CONFLICT (dead_letter_id) DO NOTHING``, and only the transaction
whose row went in re-drives the work (a concurrent second one waits on the unique index, then finds the
row and reports the first one's result). The log is in Postgres, so a Redis restart forgets nothing.

Statuses: ``open`` → ``replayed`` (re-driven by hand or by reconciliation), ``discarded`` (by hand), or
``resolved`` (nothing left to do: the run moved on, the row was delivered). Reconciliation
(``reconcile``, beat task ``aos.dlq.reconcile``) resolves stale ones, re-drives transient ones and moves
closed or very old ones to ``dead_letter_archive`` (archive and delete in one statement, in batches).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db.models import (
    DEAD_LETTER_KINDS,
    FINAL_RUN_STATUSES,
    DeadLetter,
    DeadLetterArchive,
    OutboxMessage,
    ReplayLog,
    Run,
)
from aos.db.session import session_scope
from aos.errors import AosError
from aos.runtime.catalog import CATALOG
from aos.services import outbox
from aos.services.enqueue import requeue
from aos.services.listings import dead_letter_view as view
from aos.services.publisher import CONTINUE_TASK, STEP_TASK, Publisher

log = logging.getLogger(__name__)

# Dead letters of tasks that belong to no tenant (periodic jobs) are filed under this id; only the CLI shows them.
SYSTEM_TENANT = uuid.UUID(int=0)
# Tasks whose first argument is a run id and whose work a run requeue redoes.
RUN_TASKS = frozenset({STEP_TASK, CONTINUE_TASK})
_BIGINT_MAX = 2**63 - 1

Fence = Callable[[Session], None]


# --- reading -----------------------------------------------------------------------------------------------


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _parse_id(dl_id: int | str) -> int:
    try:
        value = int(str(dl_id))
    except ValueError:
        value = -1
    if not 0 < value <= _BIGINT_MAX:
        raise AosError("DEAD_LETTER_NOT_FOUND", f"no dead letter {dl_id!r}")
    return value


def _get(s: Session, tenant_id: uuid.UUID | None, dl_id: int | str, *, lock: bool = False) -> DeadLetter:
    q = select(DeadLetter).where(DeadLetter.id == _parse_id(dl_id))
    if tenant_id is not None:  # another tenant's dead letter is a 404 too: never confirm it exists
        q = q.where(DeadLetter.tenant_id == tenant_id)
    if lock:
        q = q.with_for_update()
    dl = s.scalar(q.execution_options(populate_existing=True))
    if dl is None:
        raise AosError("DEAD_LETTER_NOT_FOUND", f"no dead letter {dl_id!r}; list them with `aos dlq list`")
    return dl


def _replay_of(s: Session, dl_id: int) -> ReplayLog | None:
    return s.scalar(select(ReplayLog).where(ReplayLog.dead_letter_id == dl_id))


def get_dead_letter(tenant_id: uuid.UUID | None, dl_id: int | str) -> dict[str, Any]:
    """One dead letter (``tenant_id`` None: any tenant's, for operators)."""
    with session_scope() as s:
        dl = _get(s, tenant_id, dl_id)
        return view(dl, _replay_of(s, dl.id))


def open_counts() -> dict[str, int]:
    """Open dead letters by kind (every tenant)."""
    with session_scope() as s:
        rows = s.execute(select(DeadLetter.kind, func.count()).where(DeadLetter.status == "open")
                         .group_by(DeadLetter.kind)).all()
    return {kind: 0 for kind in DEAD_LETTER_KINDS} | {k: n for k, n in rows}


# --- replay and discard ----------------------------------------------------------------------------------------


def replay(dl_id: int | str, *, tenant_id: uuid.UUID | None = None, publisher: Publisher | None = None,
           automatic: bool = False, fence: Fence | None = None) -> dict[str, Any]:
    """Re-drive a dead letter's work, once. Returns ``{"dead_letter", "result", "replayed_now"}``; asked again,
    the answer carries the first replay's result and ``replayed_now: false``.

    ``result``: ``requeued`` (by hand) or ``redriven`` (by reconciliation) when the work was re-driven;
    ``superseded`` when there was nothing left to do (the run already moved on, the row was delivered):
    the dead letter is then ``resolved``."""
    enqueue_ids: list[int] = []
    with session_scope() as s:
        if fence is not None:
            fence(s)
        dl = _get(s, tenant_id, dl_id)
        logged = s.scalar(pg_insert(ReplayLog).values(tenant_id=dl.tenant_id, dead_letter_id=dl.id, result="pending")
                          .on_conflict_do_nothing(index_elements=["dead_letter_id"]).returning(ReplayLog.id))
        if logged is None:  # replayed before, or just now by a transaction that committed first
            first = _replay_of(s, dl.id)
            dl = _get(s, tenant_id, dl.id)
            return {"dead_letter": view(dl, first), "result": first.result if first else "pending",
                    "replayed_now": False}
        dl = _get(s, tenant_id, dl.id, lock=True)
        if dl.status != "open":
            raise AosError("DEAD_LETTER_NOT_REPLAYABLE", f"dead letter {dl.id} is {dl.status}; only open ones replay")
        result, enqueue_ids = _redrive(s, dl)
        if result == "requeued" and automatic:
            result = "redriven"
        dl.status = "resolved" if result == "superseded" else "replayed"
        dl.resolved_at = datetime.now(UTC)
        s.execute(update(ReplayLog).where(ReplayLog.id == logged).values(result=result))
        s.flush()
        out = {"dead_letter": view(dl, _replay_of(s, dl.id)), "result": result, "replayed_now": True}
    log.info("dead letter %s (%s) replayed: %s", dl.id, dl.kind, result)
    if publisher is not None:
        for enqueue_id in enqueue_ids:  # publish now; the drain would do it within seconds otherwise
            outbox.deliver_one(enqueue_id, publisher)
    return out


def _redrive(s: Session, dl: DeadLetter) -> tuple[str, list[int]]:
    """Do the work again. Returns (result, ids of run.enqueue outbox rows to publish)."""

    if dl.kind == "outbox":
        return outbox.reopen(s, int(dl.payload["outbox_id"])), []
    if dl.kind == "task":
        task = str(dl.payload.get("task"))
        if task not in RUN_TASKS or dl.run_id is None:
            raise AosError("DEAD_LETTER_NOT_REPLAYABLE",
                           f"task {task} is not a run's work: a periodic job runs again on its own schedule "
                           f"and others cannot be re-published safely; discard dead letter {dl.id}")
    run = s.get(Run, dl.run_id, with_for_update=True) if dl.run_id else None
    if run is None:
        raise AosError("DEAD_LETTER_NOT_REPLAYABLE", f"the run of dead letter {dl.id} no longer exists")
    if dl.kind == "step":
        # the failed step must still be where the run stopped: otherwise it was resumed meanwhile
        if run.status not in ("failed", "dead_lettered") or run.next_step != dl.payload.get("step_index"):
            return "superseded", []
    elif run.status in FINAL_RUN_STATUSES or (run.lease_expires_at is not None
                                              and run.lease_expires_at > datetime.now(UTC)):
        return "superseded", []  # a crashed task's run that finished, or that a live worker is advancing
    return "requeued", requeue(s, run, reason="replay", fresh_retries=True)


def discard(dl_id: int | str, *, tenant_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Close an open dead letter without re-driving it (idempotent); CONFLICT once it was replayed."""
    with session_scope() as s:
        dl = _get(s, tenant_id, dl_id, lock=True)
        if dl.status == "replayed":
            raise AosError("CONFLICT", f"dead letter {dl.id} was already replayed; there is nothing to discard")
        if dl.status == "open":
            dl.status, dl.resolved_at = "discarded", datetime.now(UTC)
        s.flush()
        return view(dl, _replay_of(s, dl.id))


# --- crashed tasks -----------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def record_task_failure(task: str, task_id: str | None, args: Any, kwargs: Any, exc: BaseException) -> int:
    """File a crashed task as a dead letter of kind ``task``. A task failing again the same way (a periodic
    job every few seconds) adds to the open dead letter's attempts instead of filing a new one."""
    entry = CATALOG.match(exc)
    message = f"{type(exc).__name__}: {exc}"[:2000]
    args = list(args or [])
    run_id = None
    if task in RUN_TASKS and args:
        try:
            run_id = uuid.UUID(str(args[0]))
        except ValueError:
            run_id = None
    with session_scope() as s:
        # Two worker processes may file the same failure at the same instant: without a lock both would
        # find no open dead letter and insert one each. The lock lasts until this transaction ends.
        s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                  {"key": f"aos.dlq.task:{task}:{run_id}:{entry.code}"})
        tenant_id, step_id = SYSTEM_TENANT, None
        run = s.get(Run, run_id) if run_id else None
        if run is not None:
            tenant_id = run.tenant_id
            if task == STEP_TASK and len(args) > 1 and isinstance(args[1], int) \
                    and 0 <= args[1] < len(run.plan.get("steps", [])):
                step_id = run.plan["steps"][args[1]].get("id")
        same = select(DeadLetter).where(
            DeadLetter.kind == "task", DeadLetter.status == "open", DeadLetter.tenant_id == tenant_id,
            DeadLetter.payload["task"].astext == task, DeadLetter.error_code == entry.code,
            DeadLetter.run_id == run_id if run_id else DeadLetter.run_id.is_(None))
        existing = s.scalar(same.order_by(DeadLetter.id.desc()).limit(1).with_for_update())
        payload = {"task": task, "task_id": task_id, "args": _jsonable(args), "kwargs": _jsonable(kwargs or {}),
                   "exception": type(exc).__name__}
        if existing is not None:
            existing.attempts += 1
            existing.error_message = message
            existing.payload = payload
            return existing.id
        dl = DeadLetter(tenant_id=tenant_id, kind="task", run_id=run_id, step_id=step_id, payload=payload,
                        error_code=entry.code, error_message=message, attempts=1)
        s.add(dl)
        s.flush()
        dl_id = dl.id
    metrics.dead_letter_created("task")
    return dl_id


# --- reconciliation -----------------------------------------------------------------------------------------


def reconcile(publisher: Publisher | None = None, *, fence: Fence | None = None,
              tenant_id: uuid.UUID | None = None) -> dict[str, int]:
    """One pass of the beat job: resolve stale dead letters, re-drive transient ones (only ``tenant_id``'s if
    given), archive closed and old ones. ``fence`` (the singleton lease's check) runs first in every write
    transaction."""
    return {"resolved": resolve_stale(fence=fence),
            "redriven": redrive_transient(publisher, fence=fence, tenant_id=tenant_id),
            "archived": archive(fence=fence)}


def resolve_stale(*, fence: Fence | None = None) -> int:
    """Close open dead letters whose work is no longer pending: the run was resumed or finished, the outbox
    row is not dead any more, the crashed task's run is final."""
    now = datetime.now(UTC)
    run_still_stuck = exists().where(
        Run.id == DeadLetter.run_id, Run.status.in_(("failed", "dead_lettered")),
        Run.next_step == cast(DeadLetter.payload["step_index"].astext, Integer))
    row_still_dead = exists().where(
        OutboxMessage.id == cast(DeadLetter.payload["outbox_id"].astext, BigInteger), OutboxMessage.status == "dead")
    run_not_final = exists().where(Run.id == DeadLetter.run_id, Run.status.notin_(FINAL_RUN_STATUSES))
    total = 0
    with session_scope() as s:
        if fence is not None:
            fence(s)
        for kind, alive in (("step", run_still_stuck), ("outbox", row_still_dead), ("task", run_not_final)):
            q = update(DeadLetter).where(DeadLetter.status == "open", DeadLetter.kind == kind, ~alive)
            if kind == "task":
                q = q.where(DeadLetter.run_id.is_not(None))
            res = s.execute(q.values(status="resolved", resolved_at=now).execution_options(synchronize_session=False))
            total += res.rowcount  # type: ignore[attr-defined]
    return total


def _same_work(model: type[DeadLetter] | type[DeadLetterArchive], dl: DeadLetter) -> list[Any]:
    """Filters that find the other dead letters of ``dl``'s work (live or archived)."""
    if dl.kind == "step":
        return [model.kind == "step", model.run_id == dl.run_id, model.step_id == dl.step_id]
    if dl.kind == "outbox":
        return [model.kind == "outbox", model.payload["outbox_id"].astext == str(dl.payload.get("outbox_id"))]
    run = model.run_id == dl.run_id if dl.run_id else model.run_id.is_(None)
    return [model.kind == "task", model.payload["task"].astext == str(dl.payload.get("task")), run]


def prior_dead_letters(s: Session, dl: DeadLetter) -> int:
    """How many times the same work dead-lettered before this one."""
    return sum(s.scalar(select(func.count()).select_from(m).where(m.id < dl.id, *_same_work(m, dl))) or 0
               for m in (DeadLetter, DeadLetterArchive))


def redrive_transient(publisher: Publisher | None = None, *, fence: Fence | None = None,
                      tenant_id: uuid.UUID | None = None) -> int:
    """Replay open dead letters whose code the catalog calls retryable, once they are AOS_DLQ_REDRIVE_AFTER_S
    old, while their work has dead-lettered fewer than AOS_DLQ_REDRIVE_MAX times before."""
    settings = get_settings()
    retryable = [e.code for e in CATALOG if e.retryable]
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.dlq_redrive_after_s)
    scope = [] if tenant_id is None else [DeadLetter.tenant_id == tenant_id]
    with session_scope() as s:
        candidates = s.scalars(select(DeadLetter).where(
            DeadLetter.status == "open", DeadLetter.error_code.in_(retryable), DeadLetter.created_at <= cutoff,
            *scope).order_by(DeadLetter.id).limit(settings.dlq_batch)).all()
        due = [dl.id for dl in candidates if prior_dead_letters(s, dl) < settings.dlq_redrive_max]
    redriven = 0
    for dl_id in due:
        try:
            out = replay(dl_id, publisher=publisher, automatic=True, fence=fence)
        except AosError as exc:
            if exc.code == "LEASE_HELD":
                raise
            log.info("reconcile: dead letter %s not re-driven: %s", dl_id, exc)
            continue
        redriven += out["replayed_now"] and out["result"] == "redriven"
    return redriven


_ARCHIVE_COLUMNS = ("id, status, tenant_id, kind, run_id, step_id, payload, error_code, error_message, attempts, "
                    "created_at, resolved_at")
_ARCHIVE = text(f"""
WITH moved AS (
    DELETE FROM dead_letters WHERE id IN (
        SELECT id FROM dead_letters
        WHERE (status <> 'open' AND COALESCE(resolved_at, created_at) < now() - make_interval(secs => :closed_age))
           OR (status = 'open' AND created_at < now() - make_interval(days => :open_days))
        ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING {_ARCHIVE_COLUMNS})
INSERT INTO dead_letter_archive ({_ARCHIVE_COLUMNS}, archived_at)
SELECT {_ARCHIVE_COLUMNS}, now() FROM moved
RETURNING id
""")


def archive(*, fence: Fence | None = None) -> int:
    """Move closed dead letters older than AOS_DLQ_ARCHIVE_AFTER_S, and open ones older than
    AOS_DLQ_ARCHIVE_OPEN_AFTER_DAYS, to ``dead_letter_archive``: each batch is one statement (the copy and
    the delete cannot come apart) in its own short transaction."""
    settings = get_settings()
    params = {"closed_age": float(settings.dlq_archive_after_s), "open_days": int(settings.dlq_archive_open_after_days),
              "batch": max(1, settings.dlq_batch)}
    total = 0
    while True:
        with session_scope() as s:
            if fence is not None:
                fence(s)
            moved = len(s.execute(_ARCHIVE, params).all())
        total += moved
        if moved < params["batch"]:
            return total
