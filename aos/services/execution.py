"""Executing one step of one run: the use case behind the ``aos.steps.execute`` task.

Postgres is the truth, the broker only says "run step n of run r". A delivery:
1. reads the run; a final run, or a step that already has a successful
   checkpoint, is left alone (redelivery is normal, not an error);
2. claims the step with a lease (optimistic-lock version bump); a live lease
   held by another worker means a duplicate delivery, which waits and re-checks;
3. reserves budget atomically, records the attempt, resolves args from earlier
   checkpoints, calls the skill;
4. in one transaction writes the checkpoint, advances the run (version-checked),
   and records events and outbox rows; the failure catalog decides what a
   failure means (retry with the seeded backoff, fallback, skip, abort, escalate).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db.models import FINAL_RUN_STATUSES, Checkpoint, DeadLetter, Run
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import Plan, Step, parse_plan
from aos.plan.model import plan_hash
from aos.plan.refs import leading_fields, resolve
from aos.runtime import budget
from aos.runtime.backoff import retry_countdown
from aos.runtime.catalog import CATALOG, RecoveryMode
from aos.runtime.invoke import invoke_skill, outcome_error
from aos.runtime.outcome import StructuredOutcome
from aos.services import timeline
from aos.skills.base import Skill, SkillContext
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepDecision:
    """What the task should do next: let the chain go on, stop it, or retry after ``countdown``."""

    action: str  # "continue" | "stop" | "retry"
    reason: str
    countdown: float = 0.0

    @classmethod
    def go_on(cls, reason: str) -> StepDecision:
        return cls("continue", reason)

    @classmethod
    def stop(cls, reason: str) -> StepDecision:
        return cls("stop", reason)

    @classmethod
    def retry(cls, countdown: float, reason: str) -> StepDecision:
        return cls("retry", reason, countdown)


@dataclass
class _Claim:
    run_id: uuid.UUID
    tenant_id: uuid.UUID
    version: int
    attempt: int
    checkpoint_id: int
    plan: Plan
    step: Step
    skill: Skill
    reserved: budget.Reservation
    inputs: dict[str, Any]
    capabilities: dict[str, Any]
    replay_of: uuid.UUID | None = None  # a golden replay: the recorded run it re-executes


_plans: dict[tuple[uuid.UUID, str], Plan] = {}
_PLAN_CACHE_SIZE = 256


def load_plan(run: Run) -> Plan:
    """The run's parsed plan, once per process: a run's plan and inputs never change after submission,
    so (run id, plan hash) is the key — a 1,000-step run must not re-parse or re-serialise its plan per step."""
    key = (run.id, run.plan_hash)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) >= _PLAN_CACHE_SIZE:
            _plans.pop(next(iter(_plans)))  # oldest first: dicts keep insertion order
        plan = _plans[key] = parse_plan(run.plan, default_registry(), inputs=run.inputs)
    return plan


def _now() -> datetime:
    return datetime.now(UTC)


def execute_step(run_id: str, step_index: int, worker: str, abandoned: Sequence[str] = ()) -> StepDecision:
    """Run one delivery of a step. ``worker`` names this delivery (it becomes the lease owner);
    ``abandoned`` names earlier deliveries of the same task that gave the step up, perhaps after their
    claim (a database error, a time limit outside the skill): their leases are this delivery's to take."""
    settings = get_settings()
    claimed = _claim(uuid.UUID(run_id), step_index, worker, abandoned)
    if isinstance(claimed, StepDecision):
        return claimed
    c = claimed
    step, skill = c.step, c.skill
    # a golden replay shows skills the recorded run's identity (calendar UIDs derive from it)
    identity = str(c.replay_of) if c.replay_of is not None else run_id
    ctx = SkillContext(run_id=run_id, step_id=step.id, attempt=c.attempt, tenant_id=str(c.tenant_id),
                       settings=settings, idempotency_key=f"{identity}:{step.id}:{c.attempt}",
                       timeout_s=step.timeout_s or skill.default_timeout_s, capabilities=c.capabilities)
    outcome, raw, args = _run_skill(c, skill, step.args, ctx)
    if not outcome.ok and step.on_error.mode == "FALLBACK" and not _retry_left(c, outcome):
        fb = step.on_error.fallback or {}
        fb_skill = default_registry().resolve(fb["skill"])
        fb_outcome, fb_raw, fb_args = _run_skill(c, fb_skill, fb.get("args", {}), ctx, role="fallback")
        return _finish(c, fb_outcome, fb_raw, fb_args, worker, fallback_from=outcome, primary_args=args)
    return _finish(c, outcome, raw, args, worker)


def _claim(run_id: uuid.UUID, step_index: int, worker: str, abandoned: Sequence[str] = ()) -> _Claim | StepDecision:
    settings = get_settings()
    with session_scope() as s:
        run = s.get(Run, run_id)
        if run is None:
            return StepDecision.stop("run does not exist")
        if run.status in FINAL_RUN_STATUSES:
            return StepDecision.stop(f"run is {run.status}")
        if step_index >= run.step_count:
            return StepDecision.stop("no such step")
        # The step's latest attempt: a success is always the last one, a 'running' one is a dead delivery's.
        last = s.scalar(select(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.step_index == step_index)
                        .order_by(Checkpoint.attempt.desc()).limit(1))
        if last is not None and last.status in ("succeeded", "skipped"):
            return StepDecision.go_on("step already has a successful checkpoint")
        if step_index != run.next_step:
            # An earlier step is unfinished: this message is stale (a duplicate chain); the live one owns the run.
            return StepDecision.stop(f"run is at step {run.next_step}, not {step_index}")
        now = _now()
        # A live lease of another delivery means a duplicate is running the step: wait. The lease of the
        # delivery this one retries is not live work — it gave up — and waiting it out would stall the
        # step for its whole timeout.
        live_lease = run.lease_expires_at is not None and run.lease_expires_at > now
        if live_lease and run.lease_owner and run.lease_owner != worker and run.lease_owner not in abandoned:
            wait = (run.lease_expires_at - now).total_seconds() + 0.5
            return StepDecision.retry(min(wait, settings.max_countdown_s), "another worker holds the step's lease")
        plan = load_plan(run)
        step = plan.steps[step_index]
        skill = default_registry().resolve(run.skill_versions.get(step.id, step.skill))
        timeout = step.timeout_s or skill.default_timeout_s
        lease_s = timeout + settings.hard_timeout_grace_s + settings.lease_grace_s
        if run.max_wall_s is not None and run.started_at is not None and \
                (now - run.started_at).total_seconds() > run.max_wall_s:
            return _fail_run(s, run, step, "BUDGET_EXCEEDED",
                             f"run exceeded its wall-time budget of {run.max_wall_s}s")
        redelivered = last is not None and last.status == "running"
        # The claim: a version-checked update that also refuses a run cancelled meanwhile; a new attempt
        # counts as a started step (max_steps) in the same statement.
        new_version = s.scalar(
            update(Run).where(Run.id == run.id, Run.version == run.version,
                              Run.status.in_(("queued", "running")))
            .values(status="running", version=Run.version + 1, lease_owner=worker,
                    lease_expires_at=now + timedelta(seconds=lease_s), heartbeat_at=now, wake_at=None,
                    started_at=func.coalesce(Run.started_at, now), updated_at=now,
                    steps_started=Run.steps_started + (0 if redelivered else 1))
            .returning(Run.version))
        if new_version is None:
            return StepDecision.retry(0.2, "lost the claim race; re-checking")
        if run.status == "queued":
            timeline.record(s, run.tenant_id, run.id, "run.started")
        estimate = skill.cost_model.estimate(step.args)
        reservation = budget.reservation_for(estimate)
        if not redelivered:  # a crashed delivery's reservation still stands; it is settled once
            # Reserve before the attempt exists: a refused step never starts and is not counted.
            if budget.run_is_limited(run) and budget.reserve_run(s, run.id, estimate) is None:
                return _fail_run(s, run, step, "BUDGET_EXCEEDED", budget.explain(s, run.id, estimate),
                                 version=new_version, unstart=True)
            if not budget.reserve_tenant_day(s, run.tenant_id, reservation):
                budget.release_run(s, run.id, reservation)
                return _fail_run(s, run, step, "BUDGET_EXCEEDED", "the tenant's daily budget is spent",
                                 version=new_version, unstart=True)
        attempt, cp_id = _open_attempt(s, run, step, skill, worker, last)
        timeline.record(s, run.tenant_id, run.id, "step.redelivered" if redelivered else "step.started",
                        step_id=step.id, attempt=attempt, worker=worker)
        capabilities: dict[str, Any] = {}
        if run.agent_id is not None:
            from aos.db.models import Agent

            agent = s.get(Agent, run.agent_id)
            capabilities = dict(agent.capabilities) if agent else {}
        return _Claim(run_id=run.id, tenant_id=run.tenant_id, version=new_version, attempt=attempt,
                      checkpoint_id=cp_id, plan=plan, step=step, skill=skill, reserved=reservation,
                      inputs=dict(run.inputs), capabilities=capabilities, replay_of=run.replay_of)


def _open_attempt(s: Session, run: Run, step: Step, skill: Skill, worker: str,
                  last: Checkpoint | None) -> tuple[int, int]:
    """The attempt this delivery serves. A 'running' attempt left by a dead worker is taken over, so
    its idempotency key (run:step:attempt) stays the same across redeliveries."""
    if last is not None and last.status == "running":
        last.deliveries += 1
        last.worker = worker
        return last.attempt, last.id
    attempt = (last.attempt + 1) if last is not None else 1
    cp = Checkpoint(tenant_id=run.tenant_id, run_id=run.id, step_index=step.index, step_id=step.id,
                    attempt=attempt, status="running", skill=skill.ref, worker=worker)
    s.add(cp)
    s.flush()
    return attempt, cp.id


def _scope_for(c: _Claim, args: Any) -> dict[str, Any]:
    """Only the earlier outputs this step's args reference: a long run must not load every output."""
    from aos.plan.refs import iter_references

    wanted = set()
    for ref in iter_references(args, "args"):
        fields = leading_fields(ref.expr)
        if len(fields) > 1 and fields[0] == "steps":
            wanted.add(fields[1])
    steps: dict[str, Any] = {}
    if wanted:
        with session_scope() as s:
            rows = s.execute(select(Checkpoint.step_id, Checkpoint.outcome).where(
                Checkpoint.run_id == c.run_id, Checkpoint.step_id.in_(wanted),
                Checkpoint.status.in_(("succeeded", "skipped")))).all()
            steps = {sid: {"output": (oc or {}).get("output")} for sid, oc in rows}
    return {"inputs": c.inputs, "steps": steps}


def _run_skill(c: _Claim, skill: Skill, raw_args: Any, ctx: SkillContext,
               role: str = "primary") -> tuple[StructuredOutcome, Any, Any]:
    try:
        args = resolve(raw_args, _scope_for(c, raw_args))
    except AosError as exc:
        return StructuredOutcome.failure(outcome_error(CATALOG.get("REF_UNRESOLVED"), exc.message)), None, None
    except Exception as exc:  # noqa: BLE001 — a JMESPath runtime error while resolving
        entry = CATALOG.get("REF_UNRESOLVED")
        return StructuredOutcome.failure(outcome_error(entry, f"resolving args: {exc}")), None, None
    if c.replay_of is not None and not skill.deterministic:
        from aos.services.golden import replayed_skill  # a golden replay answers from the recording

        skill = replayed_skill(c.run_id, c.step.id, c.attempt, role, skill)
    with metrics.step_running(skill.name):
        outcome, raw = invoke_skill(skill, args, ctx)
    return outcome, raw, args


def _retry_left(c: _Claim, outcome: StructuredOutcome) -> bool:
    assert outcome.error is not None
    policy = c.step.retry or c.skill.default_retry
    return outcome.error.retryable and c.attempt < policy.max_attempts and c.step.on_error.mode != "SKIP"


def _finish(c: _Claim, outcome: StructuredOutcome, raw: Any, args: Any, worker: str, *,
            fallback_from: StructuredOutcome | None = None, primary_args: Any = None) -> StepDecision:
    settings = get_settings()
    with session_scope() as s:
        run = s.get(Run, c.run_id, with_for_update=True)
        assert run is not None
        if run.version != c.version or run.lease_owner != worker:
            # Our lease expired and another worker took the step over (or the run was cancelled):
            # write nothing; the partial unique index would refuse a second success anyway.
            return StepDecision.stop("lost the step's lease before finishing")
        cp = s.get(Checkpoint, c.checkpoint_id)
        assert cp is not None
        usage = outcome.usage
        cp.args = args
        cp.args_hash = plan_hash(args) if args is not None else None
        cp.outcome = outcome.to_dict()
        cp.raw = raw
        if fallback_from is not None:  # the primary call's failure, for golden recordings
            cp.fallback_from = {"args": primary_args, "outcome": fallback_from.to_dict()}
        cp.cost_usd = Decimal(str(usage.cost_usd))
        cp.input_tokens, cp.output_tokens = usage.input_tokens, usage.output_tokens
        cp.finished_at = _now()
        cp.duration_ms = outcome.timing.duration_ms
        budget.settle(s, run, c.reserved, usage)
        if outcome.ok:
            cp.status = "succeeded"
            if fallback_from is not None:
                assert fallback_from.error is not None
                timeline.record(s, run.tenant_id, run.id, "step.fallback", step_id=c.step.id,
                                code=fallback_from.error.code)
            timeline.record(s, run.tenant_id, run.id, "step.succeeded", step_id=c.step.id, attempt=c.attempt,
                            duration_ms=outcome.timing.duration_ms, cost_usd=usage.cost_usd)
            budget.warn_if_near(s, run)
            metrics.step_outcome(c.skill.name, "fallback" if fallback_from else "succeeded", outcome,
                                 code=fallback_from.error.code if fallback_from and fallback_from.error else None)
            return _advance(s, run, c)
        assert outcome.error is not None
        err = outcome.error
        cp.status = "failed"
        cp.error_code = err.code
        entry = CATALOG.get(err.code)
        if fallback_from is None and _retry_left(c, outcome):
            policy = c.step.retry or c.skill.default_retry
            hint = err.details.get("retry_after_s")
            if entry.recovery == RecoveryMode.RETRY_AFTER and isinstance(hint, int | float):
                countdown = min(float(hint), settings.max_countdown_s)
            else:
                countdown = retry_countdown(str(run.id), c.step.id, c.attempt, policy, cap_s=settings.max_countdown_s)
            if c.replay_of is not None:
                countdown = 0.0  # a golden replay has no remote to spare: its retries need no wait
            run.lease_owner, run.lease_expires_at = None, None
            run.wake_at = _now() + timedelta(seconds=countdown)
            run.version += 1
            timeline.record(s, run.tenant_id, run.id, "step.retrying", step_id=c.step.id, attempt=c.attempt,
                            code=err.code, countdown_s=countdown, message=err.message[:500])
            metrics.step_outcome(c.skill.name, "retrying", outcome)
            metrics.step_retried(c.skill.name, err.code)
            return StepDecision.retry(countdown, f"{err.code}: retry {c.attempt + 1} in {countdown:.2f}s")
        if c.step.on_error.mode == "SKIP":
            cp.status = "skipped"
            timeline.record(s, run.tenant_id, run.id, "step.skipped", step_id=c.step.id, code=err.code,
                            message=err.message[:500])
            metrics.step_outcome(c.skill.name, "skipped", outcome)
            return _advance(s, run, c)
        timeline.record(s, run.tenant_id, run.id, "step.failed", step_id=c.step.id, attempt=c.attempt,
                        code=err.code, message=err.message[:500], recovery=str(entry.recovery))
        if err.retryable:  # retries exhausted: keep the work as a dead letter
            s.add(DeadLetter(tenant_id=run.tenant_id, kind="step", run_id=run.id, step_id=c.step.id,
                             payload={"run_id": str(run.id), "step_index": c.step.index},
                             error_code=err.code, error_message=err.message, attempts=c.attempt))
            metrics.dead_letter_created("step")
        metrics.step_outcome(c.skill.name, "failed", outcome)
        return _fail_run(s, run, c.step, err.code, err.message, recorded=True)


def _advance(s: Session, run: Run, c: _Claim) -> StepDecision:
    now = _now()
    run.next_step = c.step.index + 1
    run.lease_owner, run.lease_expires_at, run.heartbeat_at, run.updated_at = None, None, now, now
    run.version += 1
    if run.next_step >= run.step_count:
        run.status, run.finished_at = "succeeded", now
        metrics.run_finished("succeeded")
        timeline.record(s, run.tenant_id, run.id, "run.succeeded", steps=run.step_count,
                        cost_usd=float(run.spent_cost_usd), tokens=run.spent_tokens)
        return StepDecision.stop("run finished")
    return StepDecision.go_on("step done")


def _fail_run(s: Session, run: Run, step: Step, code: str, message: str, *, recorded: bool = False,
              version: int | None = None, unstart: bool = False) -> StepDecision:
    """Fail the run (version-checked). ``unstart``: the claim counted a step that then did not start."""
    now = _now()
    seen = version if version is not None else run.version
    res = s.execute(update(Run).where(Run.id == run.id, Run.version == seen).values(
        steps_started=Run.steps_started - (1 if unstart else 0), status="failed", error_code=code, error_message=message[:2000], finished_at=now, updated_at=now,
        lease_owner=None, lease_expires_at=None, version=Run.version + 1))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        return StepDecision.stop("run changed meanwhile")
    s.expire(run)
    metrics.run_finished("failed")
    if code == "BUDGET_EXCEEDED":
        timeline.record(s, run.tenant_id, run.id, "budget.exceeded", step_id=step.id, message=message)
    elif not recorded:
        timeline.record(s, run.tenant_id, run.id, "step.failed", step_id=step.id, code=code, message=message)
    entry = CATALOG.get(code)
    timeline.record(s, run.tenant_id, run.id, "run.failed", step_id=step.id, code=code,
                    recovery=str(entry.recovery), message=message[:500])
    return StepDecision.stop(f"run failed: {code}")



