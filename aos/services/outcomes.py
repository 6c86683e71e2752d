"""What an attempt's outcome means for its run, as one settlement for the store to write.

The failure catalog says whether a failed attempt is retryable; the step's retry policy and
``on_error`` say what happens next:

- success (or a fallback that succeeded) → the run moves to its next step, or succeeds;
- a retryable failure with attempts left → the same step again after the seeded backoff (or the
  server's ``Retry-After``), the run keeps its place;
- ``on_error: RETRY`` → also a failure the catalog calls permanent is tried again while attempts are
  left (not a refusal of policy, plan or request: trying again cannot change those);
- ``on_error: SKIP`` → the step is recorded as skipped and the run goes on;
- ``on_error: ESCALATE`` → the run waits for a person (status ``waiting``, signal ``escalation``):
  a signal's payload becomes the step's output, a resume tries the step again;
- otherwise the run fails with the code; a retryable failure that ran out of attempts leaves a dead
  letter, so the work can be replayed, and the run is ``dead_lettered`` instead of ``failed``.

A waiting skill's step (``signal.wait``, ``human.approve``) settles as ``waiting`` (``waiting``) with
its attempt left open, until its signal or its deadline queues the run again (aos.services.signals).

Everything a checkpoint stores is serialised here first: what cannot be stored (NaN, a NUL
character, nesting too deep) or is larger than the configured caps fails the step with a code
instead of failing the statement — no input can make a step fail forever in the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aos import metrics
from aos.config import get_settings
from aos.db.jsontext import NotStorable, json_size, to_json
from aos.db.step_store import OpenAttempt, Settlement
from aos.limits import MAX_STEP_DATA_DEPTH, text_too_deep, too_deep
from aos.plan import Step
from aos.runtime import budget
from aos.runtime.backoff import retry_countdown
from aos.runtime.catalog import CATALOG, RecoveryMode
from aos.runtime.invoke import outcome_error
from aos.runtime.outcome import StructuredOutcome
from aos.services.timeline import Entries
from aos.skills.base import Skill

if TYPE_CHECKING:
    from aos.services.enqueue import RunPlan


@dataclass(slots=True)
class Claim:
    """A step this delivery holds the lease of."""

    rp: RunPlan
    step: Step
    skill: Skill
    worker: str
    version: int
    opened: OpenAttempt
    reserved: budget.Reservation
    spend: budget.Spend       # the run's spend when the step was claimed (this step counted as started)
    budget_warned: bool
    capabilities: dict[str, Any]


@dataclass(slots=True)
class StepDecision:
    """What the task should do next: let the chain go on, stop it, or retry after ``countdown``."""

    action: str  # "continue" | "stop" | "fail" | "retry"; "fail" stops like "stop", and says the run failed
    reason: str
    countdown: float = 0.0
    inlined: int = 0  # the run's next steps this delivery ran itself (their chain messages are not needed)
    # run.enqueue outbox rows of runs that this run's end gave a concurrency slot to: publish them
    admitted: tuple[int, ...] = ()

    @classmethod
    def go_on(cls, reason: str) -> StepDecision:
        return cls("continue", reason)

    @classmethod
    def stop(cls, reason: str) -> StepDecision:
        return cls("stop", reason)

    @classmethod
    def fail(cls, reason: str) -> StepDecision:
        return cls("fail", reason)

    @classmethod
    def retry(cls, countdown: float, reason: str) -> StepDecision:
        return cls("retry", reason, countdown)


@dataclass(slots=True)
class Attempt:
    """One skill call: its outcome, the raw response (golden files), and the resolved args as they are
    stored (secrets masked) with their canonical JSON, which the checkpoint keeps and hashes."""

    outcome: StructuredOutcome
    raw: Any
    args: Any
    args_json: str | None
    wait: dict[str, Any] | None = None         # a waiting skill's first arrival: what the run waits for
    events: list[dict[str, Any]] | None = None  # extra timeline events of the call (circuit transitions)
    deferred_s: float | None = None             # an open circuit refused the call: retry after this, same attempt


@dataclass(slots=True)
class Settled:
    """The settlement to write, the decision for the task, and the metrics to count once it is written."""

    settlement: Settlement
    decision: StepDecision
    metrics: list[Callable[[], None]] = field(default_factory=list)

    def count(self) -> None:
        for m in self.metrics:
            m()


def _failure(code: str, message: str) -> Attempt:
    return Attempt(StructuredOutcome.failure(outcome_error(CATALOG.get(code), message)), None, None, None)


# --- outcomes ---------------------------------------------------------------------------------------------


# Failures that on_error RETRY does not try again: a refusal of policy (budget, capability), of the plan or
# of the request comes back the same however often it is asked.
NEVER_RETRIED = frozenset({"policy", "plan", "request"})
ESCALATION_SIGNAL = "escalation"


def retry_left(c: Claim, outcome: StructuredOutcome) -> bool:
    err = outcome.error
    assert err is not None
    mode = c.step.on_error.mode
    if mode == "SKIP":
        return False
    policy = c.step.retry or c.skill.default_retry
    retryable = err.retryable or (mode == "RETRY" and err.category not in NEVER_RETRIED)
    return retryable and c.opened.tries < policy.max_attempts


def finished(c: Claim, att: Attempt, *, fallback_from: Attempt | None = None) -> Settled:
    """The settlement of a finished attempt (after its fallback, when the step has one)."""
    cap = get_settings().max_step_output_bytes
    try:
        outcome_json = to_json(att.outcome.to_dict())
        raw_json = to_json(att.raw) if att.raw is not None else None
        fallback_json = to_json({"args": fallback_from.args, "outcome": fallback_from.outcome.to_dict()}) \
            if fallback_from is not None else None
    except NotStorable as exc:
        return finished(c, _failure("DATA_NOT_STORABLE", f"the step's output: {exc}"))
    # the output sits one level down in the outcome object
    if text_too_deep(outcome_json, MAX_STEP_DATA_DEPTH + 1) or \
            (raw_json is not None and text_too_deep(raw_json, MAX_STEP_DATA_DEPTH)):
        where = too_deep(att.outcome.output, MAX_STEP_DATA_DEPTH, "output") or "the raw response"
        return finished(c, _failure("JSON_TOO_DEEP", f"the step's output nests deeper than {MAX_STEP_DATA_DEPTH} "
                                    f"levels (at {where})"))
    out_size, raw_size = json_size(outcome_json), json_size(raw_json) if raw_json else 0
    size = out_size + raw_size
    metrics.step_output_size(c.skill.name, size)
    if out_size > cap or raw_size > cap:
        return finished(c, _failure("OUTPUT_TOO_LARGE", f"the step's output takes {size} bytes as JSON, more than "
                                    f"AOS_MAX_STEP_OUTPUT_BYTES ({cap})"))
    outcome, usage, rp, step = att.outcome, att.outcome.usage, c.rp, c.step
    rows = Entries()
    common: dict[str, Any] = dict(
        run_id=rp.run_id, version=c.version, lease_owner=c.worker, attempt=c.opened,
        args=att.args_json, args_hash=_hash(att.args_json), outcome=outcome_json,
        raw=raw_json, fallback_from=fallback_json, duration_ms=outcome.timing.duration_ms,
        reserved_cost_usd=c.reserved.cost_usd, reserved_tokens=c.reserved.tokens, cost_usd=budget.money(usage.cost_usd),
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, day=c.reserved.day)
    spent = c.spend.after(usage)
    skill = c.skill.name
    for extra in att.events or ():
        rows.add(rp.run_id, extra["type"], step_id=step.id, **extra["data"])
    if outcome.ok:
        fb_code = fallback_from.outcome.error.code if fallback_from and fallback_from.outcome.error else None
        if fallback_from is not None:  # step.fallback comes first: this step.succeeded is a row of its own
            rows.add(rp.run_id, "step.fallback", step_id=step.id, code=fb_code)
            rows.add(rp.run_id, "step.succeeded", step_id=step.id, attempt=c.opened.attempt,
                     duration_ms=outcome.timing.duration_ms, cost_usd=usage.cost_usd)
        near = {} if c.budget_warned else budget.near_limits(rp.limits, spent)
        if near:  # the first time a limit passes 80 %: once per run
            rows.add(rp.run_id, "budget.warning", ratios=near, spent_cost_usd=float(spent.cost_usd),
                     spent_tokens=spent.tokens, steps_started=spent.steps_started)
        counted = [lambda: metrics.step_outcome(skill, "fallback" if fallback_from else "succeeded", outcome,
                                                code=fb_code)]
        return _advance(c, rows, common, "succeeded", spent, counted, warned=bool(near),
                        derived_success=fallback_from is None)
    assert outcome.error is not None
    err = outcome.error
    entry = CATALOG.get(err.code)
    if fallback_from is None and retry_left(c, outcome):
        countdown = _countdown(c, outcome)
        rows.add(rp.run_id, "step.retrying", step_id=step.id, attempt=c.opened.attempt, code=err.code,
                 countdown_s=countdown, message=err.message[:500])
        st = Settlement(**common, status="running", next_step=step.index, checkpoint_status="failed",
                        checkpoint_error_code=err.code, wake_at=datetime.now(UTC) + timedelta(seconds=countdown),
                        events=_rows(rows.events), outbox=_rows(rows.outbox))
        return Settled(st, StepDecision.retry(countdown, f"{err.code}: retry {c.opened.attempt + 1} in {countdown:.2f}s"),
                       [lambda: metrics.step_outcome(skill, "retrying", outcome),
                        lambda: metrics.step_retried(skill, err.code)])
    if step.on_error.mode == "SKIP":
        rows.add(rp.run_id, "step.skipped", step_id=step.id, code=err.code, message=err.message[:500])
        return _advance(c, rows, common, "skipped", spent, [lambda: metrics.step_outcome(skill, "skipped", outcome)],
                        checkpoint_error_code=err.code)
    rows.add(rp.run_id, "step.failed", step_id=step.id, attempt=c.opened.attempt, code=err.code,
             message=err.message[:500], recovery=str(entry.recovery))
    if step.on_error.mode == "ESCALATE" and fallback_from is None:
        return _escalated(c, rows, common, outcome)
    dead: list[dict[str, Any]] = []
    # retries exhausted on a failure that may pass: the work is kept as a dead letter, the run says so
    status = "dead_lettered" if err.retryable else "failed"
    counted = [lambda: metrics.step_outcome(skill, "failed", outcome), lambda: metrics.run_finished(status)]
    if err.retryable:
        dead.append({"step_id": step.id, "payload": {"run_id": str(rp.run_id), "step_index": step.index},
                     "error_code": err.code, "error_message": err.message, "attempts": c.opened.attempt})
        counted.append(lambda: metrics.dead_letter_created("step"))
    _run_failed(rows, rp.run_id, step, err.code, err.message, recorded=True)
    st = Settlement(**common, status=status, next_step=step.index, final=True, error_code=err.code,
                    error_message=err.message[:2000], checkpoint_status="failed", checkpoint_error_code=err.code,
                    events=_rows(rows.events), outbox=_rows(rows.outbox), dead_letters=_rows(dead))
    return Settled(st, StepDecision.fail(f"run failed: {err.code}: {err.message[:300]}"), counted)


def _escalated(c: Claim, rows: Entries, common: dict[str, Any], outcome: StructuredOutcome) -> Settled:
    """on_error ESCALATE: the failed attempt is recorded and the run waits for a person."""
    err, step = outcome.error, c.step
    assert err is not None
    spec = {"signal": step.on_error.signal or ESCALATION_SIGNAL, "reason": f"{err.code}: {err.message}"[:2000],
            "schema": step.on_error.schema, "timeout_s": step.on_error.timeout_s}
    wait = _wait_row(c, "escalation", spec, rows)
    st = Settlement(**common, status="waiting", next_step=step.index, checkpoint_status="failed",
                    checkpoint_error_code=err.code, events=_rows(rows.events), outbox=_rows(rows.outbox), wait=wait)
    return Settled(st, StepDecision.stop(f"run waits for a person: {err.code}"),
                   [lambda: metrics.step_outcome(c.skill.name, "failed", outcome)])


def waiting(c: Claim, att: Attempt) -> Settled:
    """A waiting skill's first arrival: the run waits for its signal, the attempt stays open (it ends when the
    signal or the deadline comes back to it), the step's reservation stays held for it, the worker is free."""
    assert att.wait is not None
    rows = Entries()
    wait = _wait_row(c, "signal", att.wait, rows) if not att.wait.get("reopen") else None
    st = Settlement(run_id=c.rp.run_id, version=c.version, lease_owner=c.worker, status="waiting",
                    next_step=c.step.index, events=_rows(rows.events), outbox=_rows(rows.outbox), wait=wait)
    return Settled(st, StepDecision.stop(f"run waits for signal {att.wait['signal']!r}"))


def deferred(c: Claim, att: Attempt) -> tuple[datetime, str, StepDecision]:
    """A call an open circuit breaker refused: when the step wakes up, its events, and the task's retry."""
    assert att.deferred_s is not None and att.outcome.error is not None
    countdown = min(max(att.deferred_s, 0.05), get_settings().max_countdown_s)
    rows = Entries()
    rows.add(c.rp.run_id, "step.deferred", step_id=c.step.id, attempt=c.opened.attempt, code=att.outcome.error.code,
             countdown_s=round(countdown, 3), upstream=att.outcome.error.details.get("upstream"))
    return (datetime.now(UTC) + timedelta(seconds=countdown), _rows(rows.events),
            StepDecision.retry(countdown, f"CIRCUIT_OPEN: attempt {c.opened.attempt} waits {countdown:.2f}s"))


def _wait_row(c: Claim, kind: str, spec: dict[str, Any], rows: Entries) -> str:
    """The run_waits row a waiting settlement inserts (JSON), and its ``run.waiting`` event (and webhook)."""
    timeout = spec.get("timeout_s")
    deadline = (datetime.now(UTC) + timedelta(seconds=float(timeout))).isoformat() if timeout else None
    rows.add(c.rp.run_id, "run.waiting", step_id=c.step.id, kind=kind, signal=spec["signal"],
             reason=spec.get("reason"), deadline=deadline)
    return to_json({"step_index": c.step.index, "step_id": c.step.id, "attempt": c.opened.attempt, "kind": kind,
                    "signal": spec["signal"], "reason": spec.get("reason"), "schema": spec.get("schema"),
                    "deadline": deadline})


def refused(rp: RunPlan, step: Step, code: str, message: str,
            fence: tuple[int, str | None]) -> tuple[Settlement, StepDecision]:
    """The settlement that fails a run whose step may not start (no attempt was opened)."""
    rows = Entries()
    _run_failed(rows, rp.run_id, step, code, message, recorded=False)
    st = Settlement(run_id=rp.run_id, version=fence[0], lease_owner=fence[1], status="failed", next_step=step.index,
                    final=True, error_code=code, error_message=message[:2000], events=_rows(rows.events),
                    outbox=_rows(rows.outbox))
    return st, StepDecision.fail(f"run failed: {code}: {message[:300]}")


def poisoned(run_id: Any, index: int, step_id: str, skill: str, fence: tuple[int, str | None], *,
             open_attempt: int | None, reserved: budget.Reservation, message: str) -> tuple[Settlement, StepDecision]:
    """The settlement that quarantines a step whose deliveries kept dying: its open attempt (if any) ends as a
    failed checkpoint, the run fails with STEP_POISONED, and the step becomes a dead letter to replay once fixed."""
    code = "STEP_POISONED"
    entry = CATALOG.get(code)
    outcome = StructuredOutcome.failure(outcome_error(entry, message))
    rows = Entries()
    rows.add(run_id, "step.failed", step_id=step_id, attempt=open_attempt, code=code, message=message[:500],
             recovery=str(entry.recovery))
    rows.add(run_id, "run.failed", step_id=step_id, code=code, recovery=str(entry.recovery), message=message[:500])
    dead = [{"step_id": step_id, "payload": {"run_id": str(run_id), "step_index": index}, "error_code": code,
             "error_message": message, "attempts": open_attempt or 0}]
    opened = OpenAttempt(index=index, step_id=step_id, skill=skill, attempt=open_attempt) \
        if open_attempt is not None else None
    st = Settlement(run_id=run_id, version=fence[0], lease_owner=fence[1], status="failed", next_step=index,
                    final=True, error_code=code, error_message=message[:2000], attempt=opened,
                    checkpoint_status="failed" if opened else None, checkpoint_error_code=code if opened else None,
                    outcome=to_json(outcome.to_dict()) if opened else None,
                    # the dead deliveries' reservation is released; nothing is known to be spent
                    reserved_cost_usd=reserved.cost_usd if opened else Decimal(0),
                    reserved_tokens=reserved.tokens if opened else 0, day=reserved.day if opened else None,
                    events=_rows(rows.events), outbox=_rows(rows.outbox), dead_letters=_rows(dead))
    return st, StepDecision.fail(f"run failed: {code}: {message[:300]}")


def _advance(c: Claim, rows: Entries, common: dict[str, Any], checkpoint_status: str, spent: budget.Spend,
             counted: list[Callable[[], None]], *, warned: bool = False,
             checkpoint_error_code: str | None = None, derived_success: bool = False) -> Settled:
    rp, step = c.rp, c.step
    next_step = step.index + 1
    final = next_step >= rp.step_count
    if final:
        rows.add(rp.run_id, "run.succeeded", steps=rp.step_count, cost_usd=float(spent.cost_usd),
                 tokens=spent.tokens)
        counted.append(lambda: metrics.run_finished("succeeded"))
    st = Settlement(**common, status="succeeded" if final else "running", next_step=next_step, final=final,
                    warned=warned, checkpoint_status=checkpoint_status, checkpoint_error_code=checkpoint_error_code,
                    derived_success=derived_success,
                    events=_rows(rows.events), outbox=_rows(rows.outbox))
    return Settled(st, StepDecision.stop("run finished") if final else StepDecision.go_on("step done"), counted)


def _run_failed(rows: Entries, run_id: Any, step: Step, code: str, message: str, *, recorded: bool) -> None:
    if code == "BUDGET_EXCEEDED":
        rows.add(run_id, "budget.exceeded", step_id=step.id, message=message)
    elif not recorded:
        rows.add(run_id, "step.failed", step_id=step.id, code=code, message=message)
    rows.add(run_id, "run.failed", step_id=step.id, code=code, recovery=str(CATALOG.get(code).recovery),
             message=message[:500])


def _countdown(c: Claim, outcome: StructuredOutcome) -> float:
    assert outcome.error is not None
    if c.rp.replay_of is not None:
        return 0.0  # a golden replay has no remote to spare: its retries need no wait
    settings = get_settings()
    hint = outcome.error.details.get("retry_after_s")
    if CATALOG.get(outcome.error.code).recovery == RecoveryMode.RETRY_AFTER and isinstance(hint, int | float):
        return min(float(hint), settings.max_countdown_s)
    policy = c.step.retry or c.skill.default_retry
    return retry_countdown(str(c.rp.run_id), c.step.id, c.opened.tries, policy, cap_s=settings.max_countdown_s)


def _hash(canonical_json: str | None) -> str | None:
    return hashlib.sha256(canonical_json.encode()).hexdigest() if canonical_json is not None else None


def _rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "[]"
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=str)
