"""Waiting runs and their signals (issue 15): what a run waits for, a signal's delivery, passed deadlines.

A run waits in two ways, both settled by the step path (``aos.services.outcomes``): a step of a
waiting skill (``signal.wait``, ``human.approve``) parks it with its attempt left open; a step whose
``on_error`` is ``ESCALATE`` parks it after its failed attempt. Either way the run's status is
``waiting`` and a ``run_waits`` row says for what; no worker and no broker message is held.

- ``deliver_signal`` (``POST /runs/{id}/signals/{name}``): checks the name and the payload against the
  open wait, records the payload with the client's idempotency key (the same key again is answered,
  not applied, again), and moves the run on, in one transaction. A waiting skill's run is queued at
  the same step: the worker takes the open attempt over and the skill turns the payload into the
  step's output (``arrived``). An escalation's payload *is* the step's output: its checkpoint is
  written here and the run goes on at the next step;
- ``expire_waits`` (beat): a passed deadline fails the waiting step with ``SIGNAL_TIMEOUT``: a waiting
  skill's run is queued so that the worker fails the step and its ``on_error`` decides; an
  escalation, which is already its step's ``on_error``, fails the run;
- ``close_waits``: a run that leaves its wait otherwise (cancel, resume) closes it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aos import metrics
from aos.db.jsontext import NotStorable, to_json
from aos.db.models import Checkpoint, GoldenReplayCall, Run, RunWait
from aos.db.session import session_scope
from aos.errors import AosError
from aos.runtime.outcome import StructuredOutcome
from aos.services import enqueue as enqueue_run
from aos.services import outbox, timeline
from aos.services.publisher import Publisher
from aos.services.tenancy import TenantContext
from aos.skills.signals import payload_problems

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 200


# --- the worker's side ---------------------------------------------------------------------------------------


def arrived(wait: dict[str, Any] | None) -> dict[str, Any] | None:
    """What came back to a waiting step (its ``ctx.signal``), from its latest wait; None: it must (re)park."""
    if wait is None:
        return None
    if wait["status"] == "signalled":
        return {"name": wait["signal"], "payload": wait["payload"]}
    if wait["status"] == "expired":
        deadline = wait["deadline"]
        return {"name": wait["signal"], "expired": True, "deadline": deadline.isoformat() if deadline else None}
    return None  # still waiting (a duplicate message) or closed by a cancel or a resume: wait anew


# --- reading --------------------------------------------------------------------------------------------------


def wait_view(w: RunWait) -> dict[str, Any]:
    return {"signal": w.signal, "kind": w.kind, "step_id": w.step_id, "reason": w.reason,
            "schema": w.payload_schema, "deadline": w.deadline.isoformat() if w.deadline else None,
            "since": w.created_at.isoformat() if w.created_at else None}


def open_wait(s: Session, run_id: uuid.UUID, *, lock: bool = False) -> RunWait | None:
    q = select(RunWait).where(RunWait.run_id == run_id, RunWait.status == "waiting").order_by(RunWait.id.desc())
    return s.scalar(q.with_for_update() if lock else q.limit(1))


def waiting_for(s: Session, run: Run) -> dict[str, Any] | None:
    """What a waiting run waits for (None when it does not wait): the run view's ``waiting``."""
    if run.status != "waiting":
        return None
    w = open_wait(s, run.id)
    return wait_view(w) if w is not None else None


def list_signals(ctx: TenantContext, run_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """Every wait of the run, oldest first, with the signal that ended it (payload, key, when)."""
    with session_scope() as s:
        run = _run(s, ctx, run_id)
        waits = s.scalars(select(RunWait).where(RunWait.run_id == run.id).order_by(RunWait.id)).all()
        return [{**wait_view(w), "status": w.status, "payload": w.payload, "idempotency_key": w.idempotency_key,
                 "resolved_at": w.resolved_at.isoformat() if w.resolved_at else None} for w in waits]


# --- delivering ---------------------------------------------------------------------------------------------


def deliver_signal(ctx: TenantContext, run_id: uuid.UUID | str, name: str, payload: Any,
                   idempotency_key: str | None, publisher: Publisher | None) -> dict[str, Any]:
    """Deliver signal ``name`` with ``payload`` to a waiting run; the answer says what it did.

    ``{"run_id", "signal", "step_id", "status": <the run's status after>, "duplicate": bool}``: a key sent
    again with the same signal and payload is answered from the first delivery (``duplicate``) and changes
    nothing; with another signal or payload it is refused (IDEMPOTENCY_KEY_REUSED). A name the run does not
    wait for (whatever it is) is SIGNAL_NOT_AWAITED."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH:
        raise AosError("VALIDATION_ERROR", f"an idempotency key has 1 to {MAX_KEY_LENGTH} characters")
    try:
        to_json(payload)
    except NotStorable as exc:
        raise AosError("SIGNAL_PAYLOAD_INVALID", f"the payload cannot be stored as JSON: {exc}") from None
    outbox_id = None
    with session_scope() as s:
        run = _run(s, ctx, run_id, lock=True)  # one delivery at a time per run: the key check holds
        if idempotency_key is not None:
            done = s.scalar(select(RunWait).where(RunWait.run_id == run.id,
                                                  RunWait.idempotency_key == idempotency_key))
            if done is not None:
                if done.signal != name or done.payload != payload:
                    raise AosError("IDEMPOTENCY_KEY_REUSED", f"key {idempotency_key!r} already delivered signal "
                                   f"{done.signal!r} with another payload to this run")
                return {"run_id": str(run.id), "signal": name, "step_id": done.step_id, "status": run.status,
                        "duplicate": True}
        wait = open_wait(s, run.id, lock=True) if run.status == "waiting" else None
        if wait is None:
            raise AosError("RUN_NOT_WAITING", f"run {run.id} is {run.status}; it waits for no signal")
        if wait.signal != name:
            raise AosError("SIGNAL_NOT_AWAITED", f"run {run.id} waits for signal {wait.signal!r}, not {name!r}")
        problems = payload_problems(wait.payload_schema, payload)
        if problems:
            first = problems[0]
            raise AosError("SIGNAL_PAYLOAD_INVALID", f"{first['path']}: {first['message']}", problems=problems)
        now = datetime.now(UTC)
        wait.status, wait.payload, wait.idempotency_key, wait.resolved_at = "signalled", payload, idempotency_key, now
        timeline.record(s, run.tenant_id, run.id, "signal.received", step_id=wait.step_id, signal=name,
                        idempotency_key=idempotency_key)
        if wait.kind == "signal":
            outbox_id = _wake(s, run, now)
        else:
            outbox_id = _answer_escalation(s, run, wait, payload, now)
        status = run.status
    if outbox_id is not None and publisher is not None:
        outbox.deliver_one(outbox_id, publisher)
    return {"run_id": str(run.id), "signal": name, "step_id": wait.step_id, "status": status, "duplicate": False}


def _run(s: Session, ctx: TenantContext, run_id: uuid.UUID | str, *, lock: bool = False) -> Run:
    try:
        rid = uuid.UUID(str(run_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no run {run_id!r}") from None
    q = select(Run).where(Run.id == rid, Run.tenant_id == ctx.tenant_id)
    run = s.scalar(q.with_for_update() if lock else q)
    if run is None:  # another tenant's run is a 404 too
        raise AosError("NOT_FOUND", f"no run {run_id!r}")
    return run


def _wake(s: Session, run: Run, now: datetime) -> int:
    """Queue a waiting skill's run at its step again. The open attempt's deliveries restart at zero: the worker
    that takes it over continues the attempt, it is not a redelivery."""
    run.status, run.attempt_deliveries, run.version, run.updated_at = "running", 0, run.version + 1, now
    run.lease_owner = run.lease_expires_at = run.wake_at = None
    s.flush()
    return enqueue_run.add_enqueue(s, run.tenant_id, run.id, run.next_step)


def answer_from_recording(run_id: uuid.UUID) -> bool | None:
    """A golden replay run that escalated: the recording's answer (the signal that answered the recorded run's
    escalation, its next attempt) answers it at once. Whether the run goes on at its next step (True) or
    finished (False); None: nothing was recorded, the run waits for a person like any other."""
    with session_scope() as s:
        run = s.scalar(select(Run).where(Run.id == run_id).with_for_update())
        wait = open_wait(s, run_id, lock=True) if run is not None and run.status == "waiting" else None
        if run is None or wait is None or wait.kind != "escalation":
            return None
        attempt = _next_attempt(s, run, wait)
        call = s.scalar(select(GoldenReplayCall.call).where(
            GoldenReplayCall.run_id == run_id, GoldenReplayCall.step_id == wait.step_id,
            GoldenReplayCall.attempt == attempt, GoldenReplayCall.role == "primary"))
        raw = (call or {}).get("raw")
        if not isinstance(raw, dict) or raw.get("signal") != wait.signal:
            return None
        now = datetime.now(UTC)
        wait.status, wait.payload, wait.resolved_at = "signalled", raw.get("payload"), now
        timeline.record(s, run.tenant_id, run.id, "signal.received", step_id=wait.step_id, signal=wait.signal,
                        replayed=True)
        _answer_escalation(s, run, wait, raw.get("payload"), now, enqueue=False)
        return run.status == "running"


def _next_attempt(s: Session, run: Run, wait: RunWait) -> int:
    return (s.scalar(select(Checkpoint.attempt).where(Checkpoint.run_id == run.id,
                                                      Checkpoint.step_index == wait.step_index)
                     .order_by(Checkpoint.attempt.desc()).limit(1)) or 0) + 1


def _answer_escalation(s: Session, run: Run, wait: RunWait, payload: Any, now: datetime, *,
                       enqueue: bool = True) -> int | None:
    """A person's answer to an escalated step is its output: a succeeded attempt of its own, then the next step."""
    step = run.plan["steps"][wait.step_index]
    attempt = _next_attempt(s, run, wait)
    s.add(Checkpoint(tenant_id=run.tenant_id, run_id=run.id, step_index=wait.step_index, step_id=wait.step_id,
                     attempt=attempt, deliveries=1, status="succeeded",
                     skill=run.skill_versions.get(wait.step_id, step["skill"]), worker=f"signal:{wait.signal}",
                     started_at=now, finished_at=now, duration_ms=Decimal(0),
                     outcome=StructuredOutcome.success(payload).to_dict(),
                     raw={"signal": wait.signal, "payload": payload}))
    timeline.record(s, run.tenant_id, run.id, "step.succeeded", step_id=wait.step_id, attempt=attempt,
                    signal=wait.signal)
    run.next_step, run.attempt, run.attempt_open = wait.step_index + 1, 0, False
    run.version, run.updated_at = run.version + 1, now
    run.lease_owner = run.lease_expires_at = run.wake_at = None
    if run.next_step >= run.step_count:
        run.status, run.finished_at = "succeeded", now
        timeline.record(s, run.tenant_id, run.id, "run.succeeded", steps=run.step_count,
                        cost_usd=float(run.spent_cost_usd), tokens=run.spent_tokens)
        s.flush()
        metrics.run_finished("succeeded")
        return None
    run.status = "running"
    s.flush()
    return enqueue_run.add_enqueue(s, run.tenant_id, run.id, run.next_step) if enqueue else None


# --- deadlines ------------------------------------------------------------------------------------------------


def expire_waits(publisher: Publisher | None, limit: int = 100) -> int:
    """End the waits whose deadline passed (beat): ``SIGNAL_TIMEOUT`` for their step. Returns how many.

    Each in a transaction of its own that locks the run before its wait, in the order a delivery does (a
    delivery racing the deadline either comes first — the wait is no longer open — or finds it expired)."""
    with session_scope() as s:
        due = s.execute(select(RunWait.id, RunWait.run_id).where(
            RunWait.status == "waiting", RunWait.deadline < datetime.now(UTC))
            .order_by(RunWait.deadline).limit(limit)).all()
    ended = 0
    for wait_id, run_id in due:
        outbox_id = None
        with session_scope() as s:
            run = s.scalar(select(Run).where(Run.id == run_id).with_for_update(skip_locked=True))
            wait = s.scalar(select(RunWait).where(RunWait.id == wait_id, RunWait.status == "waiting")
                            .with_for_update()) if run is not None else None
            if run is None or wait is None:
                continue  # busy (the next tick sees it again) or ended meanwhile
            now = datetime.now(UTC)
            ended += 1
            if run.status != "waiting":  # the run left the wait another way; only the row was left open
                wait.status, wait.resolved_at = "cancelled", now
                continue
            wait.status, wait.resolved_at = "expired", now
            timeline.record(s, run.tenant_id, run.id, "signal.expired", step_id=wait.step_id, signal=wait.signal,
                            deadline=wait.deadline.isoformat() if wait.deadline else None)
            log.info("run %s: wait for signal %r at step %s passed its deadline", run.id, wait.signal, wait.step_id)
            if wait.kind == "signal":
                outbox_id = _wake(s, run, now)
            else:
                _fail_escalation(s, run, wait, now)
        if outbox_id is not None and publisher is not None:
            outbox.deliver_one(outbox_id, publisher)
    return ended


def _fail_escalation(s: Session, run: Run, wait: RunWait, now: datetime) -> None:
    message = f"no signal {wait.signal!r} arrived before the deadline {wait.deadline.isoformat() if wait.deadline else ''}"
    run.status, run.finished_at, run.error_code, run.error_message = "failed", now, "SIGNAL_TIMEOUT", message
    run.version, run.updated_at = run.version + 1, now
    timeline.record(s, run.tenant_id, run.id, "run.failed", step_id=wait.step_id, code="SIGNAL_TIMEOUT",
                    recovery="ESCALATE", message=message)
    s.flush()
    metrics.run_finished("failed")


def close_waits(s: Session, run_id: uuid.UUID) -> None:
    """A run leaves its wait without a signal (cancel, resume): its open wait is closed."""
    s.execute(update(RunWait).where(RunWait.run_id == run_id, RunWait.status == "waiting")
              .values(status="cancelled", resolved_at=datetime.now(UTC)))
