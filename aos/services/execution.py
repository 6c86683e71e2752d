"""Executing one step of one run: the use case behind the ``aos.steps.execute`` task.

Postgres is the truth, the broker only says "run step n of run r". A delivery costs two round
trips to Postgres (``aos.db.step_store``):

1. **claim** (a redoable write, ``synchronous_commit`` off): take the lease of the run's current
   step, reserve its estimate on the budget, open (or take over) its attempt on the run row. When
   the claim does not hold, one read says why: the run is final, the step already succeeded
   (redelivery is normal, not an error), the message is stale, another delivery holds a live
   lease (wait and re-check), or a budget refuses the step (the run fails, the step never starts);
2. resolve the args from the inputs and the earlier outputs they reference, call the skill
   (``runtime.invoke``: whatever happens becomes a StructuredOutcome classified by the catalog);
3. **settle** (durable): the attempt's checkpoint, the run moved on (``aos.services.outcomes`` decides how:
   next step, retry with the seeded backoff, fallback, skip, or fail), spend, events, outbox rows
   and dead letters — fenced by the run's version and this delivery's lease.

The run's plan comes from the process's cache (``aos.services.enqueue.run_plan``): per step,
nothing of the plan is read from Postgres, whatever its size.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg.errors

from aos import metrics
from aos.config import get_settings
from aos.db import direct, step_store
from aos.db.models import FINAL_RUN_STATUSES
from aos.db.scope import as_tenant
from aos.errors import AosError
from aos.golden.replay import ReplayedSkill
from aos.limits import MAX_STEP_DATA_DEPTH, text_too_deep, too_deep
from aos.plan import Step
from aos.plan.refs import resolve
from aos.redaction import redact_args
from aos.runtime import budget
from aos.runtime.catalog import CATALOG
from aos.runtime.invoke import invoke_skill, outcome_error
from aos.runtime.outcome import StructuredOutcome
from aos.services import concurrency, outcomes
from aos.services.enqueue import RunPlan, referenced_steps, run_plan
from aos.services.outcomes import Claim, StepDecision
from aos.skills.base import Skill, SkillContext
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)

__all__ = ["StepDecision", "execute_step"]


def execute_step(run_id: str, step_index: int, worker: str, abandoned: Sequence[str] = ()) -> StepDecision:
    """Run one delivery of a step. ``worker`` names this delivery (it becomes the lease owner);
    ``abandoned`` names earlier deliveries of the same task that gave the step up, perhaps after their
    claim (a database error, a time limit outside the skill): their leases are this delivery's to take."""
    rid = uuid.UUID(run_id)
    rp = run_plan(rid)
    if rp is None:
        return StepDecision.stop("run does not exist")
    if step_index >= rp.step_count:
        return StepDecision.stop("no such step")
    # every statement of the step from here on sees only the run's tenant's rows (row-level security);
    # the setting travels with each statement (aos.db.statements): no round trip of its own
    with as_tenant(rp.tenant_id):
        return _execute(rp, step_index, worker, abandoned)


def _execute(rp: RunPlan, step_index: int, worker: str, abandoned: Sequence[str]) -> StepDecision:
    run_id = str(rp.run_id)
    claimed = _claim(rp, step_index, worker, abandoned)
    if isinstance(claimed, StepDecision):
        return claimed
    c = claimed
    step, skill = c.step, c.skill
    settings = get_settings()
    # a golden replay shows skills the recorded run's identity (calendar UIDs derive from it)
    identity = str(rp.replay_of) if rp.replay_of is not None else run_id
    ctx = SkillContext(run_id=run_id, step_id=step.id, attempt=c.opened.attempt, tenant_id=str(rp.tenant_id),
                       settings=settings, idempotency_key=f"{identity}:{step.id}:{c.opened.attempt}",
                       timeout_s=step.timeout_s or skill.default_timeout_s, capabilities=c.capabilities)
    attempt = _run_skill(c, skill, step.args, ctx)
    if not attempt.outcome.ok and step.on_error.mode == "FALLBACK" and not outcomes.retry_left(c, attempt.outcome):
        fb = step.on_error.fallback or {}
        try:
            fb_skill = default_registry().resolve(fb["skill"])
        except AosError as exc:
            fallback = _failed_attempt(exc.code, exc.message)
        else:
            fallback = _run_skill(c, fb_skill, fb.get("args", {}), ctx, role="fallback")
        return _settle(c, outcomes.finished(c, fallback, fallback_from=attempt))
    return _settle(c, outcomes.finished(c, attempt))


# --- claim -----------------------------------------------------------------------------------------


def _claim(rp: RunPlan, index: int, worker: str, abandoned: Sequence[str]) -> Claim | StepDecision:
    settings = get_settings()
    step = rp.plan.steps[index]
    skill = rp.skills[index]
    if skill is None:
        return _refuse(rp, step, "SKILL_NOT_FOUND", rp.missing[index], worker, abandoned)
    estimate = skill.cost_model.estimate(step.args)
    reservation = budget.reservation_for(estimate)
    req = step_store.ClaimRequest(
        run_id=rp.run_id, index=index, step_id=step.id, skill=skill.ref, worker=worker, takeover=tuple(abandoned),
        lease_s=rp.timeouts[index] + settings.hard_timeout_grace_s + settings.lease_grace_s,
        cost_usd=reservation.cost_usd, tokens=reservation.tokens)
    try:
        with direct.relaxed() as conn:
            if reservation.cost_usd > 0:  # the tenant's day is reserved in the same (rolled back if refused) transaction
                with conn.transaction():
                    row = step_store.claim(conn, req)
                    if row is not None and not row["redelivered"] and not step_store.reserve_tenant_day(
                            conn, rp.tenant_id, reservation.day, reservation.cost_usd):
                        raise _DayRefused
            else:
                row = step_store.claim(conn, req)
    except _DayRefused:
        return _refuse(rp, step, "BUDGET_EXCEEDED", "the tenant's daily budget is spent", worker, abandoned)
    if row is None:
        return _why_not(rp, step, estimate, worker, abandoned)
    opened = step_store.OpenAttempt(index=index, step_id=step.id, skill=skill.ref, attempt=row["attempt"])
    return Claim(
        rp=rp, step=step, skill=skill, worker=worker, version=row["version"], opened=opened,
        reserved=reservation if not row["redelivered"] else budget.NOTHING,
        spend=budget.Spend(cost_usd=row["spent_cost_usd"], tokens=row["spent_tokens"],
                           steps_started=row["steps_started"], reserved_cost_usd=row["reserved_cost_usd"],
                           reserved_tokens=row["reserved_tokens"]),
        budget_warned=row["budget_warned"], capabilities=dict(row["capabilities"] or {}))


class _DayRefused(Exception):
    """The tenant's daily budget refused the step's reservation: roll the claim back."""


def _why_not(rp: RunPlan, step: Step, estimate: budget.Estimate, worker: str,
             abandoned: Sequence[str]) -> StepDecision:
    """The claim did not hold: read the run once and say why (rare: redeliveries, races, refusals)."""
    with direct.relaxed() as conn:
        st = step_store.run_state(conn, rp.run_id, step.index)
    if st is None:
        return StepDecision.stop("run does not exist")
    if st["status"] in FINAL_RUN_STATUSES:
        return StepDecision.stop(f"run is {st['status']}")
    if st["last_status"] in ("succeeded", "skipped"):
        return StepDecision.go_on("step already has a successful checkpoint")
    if step.index != st["next_step"]:
        # An earlier step is unfinished: this message is stale (a duplicate chain); the live one owns the run.
        return StepDecision.stop(f"run is at step {st['next_step']}, not {step.index}")
    now: datetime = st["now"]
    expires, owner = st["lease_expires_at"], st["lease_owner"]
    # A live lease of another delivery means a duplicate is running the step: wait. The lease of the
    # delivery this one retries is not live work — it gave up — and waiting it out would stall the
    # step for its whole timeout.
    if expires is not None and expires > now and owner and owner != worker and owner not in abandoned:
        wait = (expires - now).total_seconds() + 0.5
        return StepDecision.retry(min(wait, get_settings().max_countdown_s), "another worker holds the step's lease")
    fence = (st["version"], owner)
    if st["max_wall_s"] is not None and st["started_at"] is not None and \
            (now - st["started_at"]).total_seconds() > st["max_wall_s"]:
        return _refuse(rp, step, "BUDGET_EXCEEDED", f"run exceeded its wall-time budget of {st['max_wall_s']}s",
                       worker, abandoned, fence=fence)
    spend = budget.Spend(cost_usd=st["spent_cost_usd"], tokens=st["spent_tokens"], steps_started=st["steps_started"],
                         reserved_cost_usd=st["reserved_cost_usd"], reserved_tokens=st["reserved_tokens"])
    if not st["attempt_open"] and budget.refuses(rp.limits, spend, estimate):
        return _refuse(rp, step, "BUDGET_EXCEEDED", budget.explain(rp.limits, spend, estimate), worker, abandoned,
                       fence=fence)
    return StepDecision.retry(0.2, "lost the claim race; re-checking")


def _refuse(rp: RunPlan, step: Step, code: str, message: str, worker: str, abandoned: Sequence[str], *,
            fence: tuple[int, str | None] | None = None) -> StepDecision:
    """Fail the run before its step started (a budget, a missing skill), fenced by the run as read."""
    if fence is None:
        with direct.relaxed() as conn:
            st = step_store.run_state(conn, rp.run_id, step.index)
        if st is None or st["status"] in FINAL_RUN_STATUSES:
            return StepDecision.stop("run changed meanwhile")
        fence = (st["version"], st["lease_owner"])
    settlement, decision = outcomes.refused(rp, step, code, message, fence)
    settled, admitted = _write(rp, settlement)
    if not settled:
        return StepDecision.stop("run changed meanwhile")
    metrics.run_finished("failed")
    return replace(decision, admitted=admitted)


# --- the skill call ----------------------------------------------------------------------------------


def _scope_for(c: Claim, args: Any) -> dict[str, Any]:
    """Only the earlier outputs these args reference: a long run must not load every output."""
    wanted = c.rp.refs[c.step.index] if args is c.step.args else referenced_steps(args)
    steps: dict[str, Any] = {}
    if wanted:
        with direct.relaxed() as conn:
            steps = {sid: {"output": out} for sid, out in step_store.outputs(conn, c.rp.run_id, sorted(wanted)).items()}
    return {"inputs": c.rp.inputs, "steps": steps}


def _failed_attempt(code: str, message: str) -> outcomes.Attempt:
    return outcomes.Attempt(StructuredOutcome.failure(outcome_error(CATALOG.get(code), message)), None, None, None)


def _run_skill(c: Claim, skill: Skill, raw_args: Any, ctx: SkillContext, role: str = "primary") -> outcomes.Attempt:
    try:
        args = resolve(raw_args, _scope_for(c, raw_args))
    except AosError as exc:
        return _failed_attempt("REF_UNRESOLVED", exc.message)
    except Exception as exc:  # noqa: BLE001 — a JMESPath runtime error while resolving
        return _failed_attempt("REF_UNRESOLVED", f"resolving args: {exc}")
    # what the checkpoint keeps (and hashes): the args with their secrets masked; the skill gets them whole
    stored_args = redact_args(skill, args)
    try:
        args_json = outcomes.to_json(stored_args, canonical=True)
    except outcomes.NotStorable as exc:
        return _failed_attempt("DATA_NOT_STORABLE", f"the step's resolved args: {exc}")
    if text_too_deep(args_json, MAX_STEP_DATA_DEPTH):
        return _failed_attempt("JSON_TOO_DEEP", f"the step's resolved args nest deeper than {MAX_STEP_DATA_DEPTH} "
                               f"levels (at {too_deep(args, MAX_STEP_DATA_DEPTH, 'args')})")
    limit, size = get_settings().max_step_args_bytes, outcomes.json_size(args_json)
    if size > limit:
        return _failed_attempt("ARGS_TOO_LARGE", f"the step's resolved args take {size} bytes as JSON, "
                               f"more than AOS_MAX_STEP_ARGS_BYTES ({limit})")
    if c.rp.replay_of is not None and not skill.deterministic:  # a golden replay answers from the recording
        with direct.relaxed() as conn:
            skill = ReplayedSkill(skill, step_store.replay_call(conn, c.rp.run_id, c.step.id, c.opened.attempt, role))
    with metrics.step_running(skill.name):
        outcome, raw = invoke_skill(skill, args, ctx)
    return outcomes.Attempt(outcome, raw, stored_args, args_json)


# --- settle ------------------------------------------------------------------------------------------


def _write(rp: RunPlan, settlement: step_store.Settlement) -> tuple[bool, tuple[int, ...]]:
    """Write a settlement: one durable statement; when it ends a run that a concurrency limit applies to,
    the slot it frees goes to the next waiting runs in the same transaction (their enqueues returned)."""
    with direct.durable() as conn:
        if not (settlement.final and rp.limited):
            return step_store.settle(conn, settlement), ()
        with conn.transaction():
            if not step_store.settle(conn, settlement):
                return False, ()
            return True, tuple(concurrency.admit(conn, rp.tenant_id).values())


def _settle(c: Claim, plan: outcomes.Settled) -> StepDecision:
    try:
        settled, admitted = _write(c.rp, plan.settlement)
    except (psycopg.DataError, UnicodeEncodeError) as exc:
        # Postgres refused what the skill produced (a string jsonb cannot hold): the step fails, the run
        # goes on being handled like any failure — never a message redelivered forever.
        log.warning("run %s step %s: output not storable: %s", c.rp.run_id, c.step.id, exc)
        plan = outcomes.finished(c, _failed_attempt("DATA_NOT_STORABLE", f"{type(exc).__name__}: {exc}"[:500]))
        settled, admitted = _write(c.rp, plan.settlement)
    if not settled:
        # Our lease expired and another delivery took the step over (or the run was cancelled): nothing
        # was written; the partial unique index would refuse a second success anyway.
        return StepDecision.stop("lost the step's lease before finishing")
    plan.count()
    return replace(plan.decision, admitted=admitted) if admitted else plan.decision

