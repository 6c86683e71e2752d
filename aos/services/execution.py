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
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg.errors

from aos import metrics
from aos.config import get_settings
from aos.db import direct, step_store
from aos.db.models import FINAL_RUN_STATUSES
from aos.db.scope import as_operator, as_tenant
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
from aos.services import circuit, concurrency, outcomes, quotas, signals
from aos.services.enqueue import RunPlan, referenced_steps, run_plan
from aos.services.outcomes import Claim, StepDecision
from aos.skills.base import Skill, SkillContext
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)

__all__ = ["StepDecision", "execute_step", "step_crashed"]


def execute_step(run_id: str, step_index: int, worker: str, abandoned: Sequence[str] = (),
                 first_delivery: bool = False, inline_limit: int = 0) -> StepDecision:
    """Run one delivery of a step. ``worker`` names this delivery (it becomes the lease owner);
    ``abandoned`` names earlier deliveries of the same task that gave the step up, perhaps after their
    claim (a database error, a time limit outside the skill): their leases are this delivery's to take.
    ``first_delivery``: the task's first (not a retry): a pure step may then go without a claim.
    ``inline_limit``: how many of the run's next steps the task's chain holds: after a success, this
    delivery may run that many claimless steps itself (``_inline``) and says how many in ``inlined``."""
    return _inline(run_id, step_index, worker,
                   _execute_step(run_id, step_index, worker, abandoned, first_delivery), inline_limit)


def _inline(run_id: str, index: int, worker: str, decision: StepDecision, limit: int) -> StepDecision:
    """Go on with the run's next claimless steps in this delivery, each settled (checkpointed) on its own,
    for up to AOS_INLINE_STEPS_MS: a pure step needs no lease, so a broker hop per step buys nothing."""
    budget_s = get_settings().inline_steps_ms / 1000
    if limit <= 0 or budget_s <= 0 or decision.action != "continue":
        return decision
    rp = run_plan(uuid.UUID(run_id))
    if rp is None:
        return decision
    t0, done = time.perf_counter(), 0
    while done < limit and index + 1 + done < rp.step_count and rp.claimless[index + 1 + done] \
            and time.perf_counter() - t0 < budget_s:
        with as_tenant(rp.tenant_id):
            d = _execute_claimless(rp, index + 1 + done, worker)
        if d is None:  # the run is not where this delivery left it: the step's own message decides
            break
        if d.action == "retry":
            # the step's retry waits out its countdown in its own message: retry this (finished) task with it,
            # which goes on with the chain from that step once the countdown has passed
            d.inlined = done
            return d
        done += 1
        decision = d
        if d.action != "continue":
            break
    decision.inlined = done
    return decision


def _execute_step(run_id: str, step_index: int, worker: str, abandoned: Sequence[str],
                  first_delivery: bool) -> StepDecision:
    rid = uuid.UUID(run_id)
    rp = run_plan(rid)
    if rp is None:
        return StepDecision.stop("run does not exist")
    if step_index >= rp.step_count:
        return StepDecision.stop("no such step")
    # every statement of the step from here on sees only the run's tenant's rows (row-level security);
    # the setting travels with each statement (aos.db.statements): no round trip of its own
    with as_tenant(rp.tenant_id):
        return _execute(rp, step_index, worker, abandoned, first_delivery)


def _execute(rp: RunPlan, step_index: int, worker: str, abandoned: Sequence[str],
             first_delivery: bool) -> StepDecision:
    rid = rp.run_id
    if first_delivery and not abandoned and rp.claimless[step_index]:
        decided = _execute_claimless(rp, step_index, worker)
        if decided is not None:
            return decided
    claimed = _claim(rp, step_index, worker, abandoned)
    if isinstance(claimed, StepDecision):
        return claimed
    c = claimed
    step, ctx = c.step, _context(c)
    attempt = _run_skill(c, c.skill, step.args, ctx)
    if attempt.wait is not None or attempt.deferred_s is not None:  # issue 15: a wait, or an open circuit
        return _park(c, attempt)
    if not attempt.outcome.ok and step.on_error.mode == "FALLBACK" and not outcomes.retry_left(c, attempt.outcome):
        fb = step.on_error.fallback or {}
        try:
            fb_skill = default_registry().resolve(fb["skill"])
        except AosError as exc:
            fallback = _failed_attempt(exc.code, exc.message)
        else:
            fallback = _run_skill(c, fb_skill, fb.get("args", {}), ctx, role="fallback")
            if fallback.deferred_s is not None:
                return _park(c, fallback)
        return _settle(c, outcomes.finished(c, fallback, fallback_from=attempt))
    decision = _settle(c, outcomes.finished(c, attempt))
    if rp.replay_of is not None and step.on_error.mode == "ESCALATE" and decision.action == "stop":
        # a golden replay's escalation is answered by the recorded signal (issue 15): the chain goes on
        goes_on = signals.answer_from_recording(rid)
        if goes_on is not None:
            return StepDecision.go_on("answered from the recording") if goes_on else StepDecision.stop("run finished")
    return decision


def _context(c: Claim) -> SkillContext:
    rp, step = c.rp, c.step
    # a golden replay shows skills the recorded run's identity (calendar UIDs derive from it)
    identity = str(rp.replay_of) if rp.replay_of is not None else str(rp.run_id)
    return SkillContext(run_id=str(rp.run_id), step_id=step.id, attempt=c.opened.attempt, tenant_id=str(rp.tenant_id),
                        settings=get_settings(), idempotency_key=f"{identity}:{step.id}:{c.opened.attempt}",
                        timeout_s=step.timeout_s or c.skill.default_timeout_s, capabilities=c.capabilities)


def _execute_claimless(rp: RunPlan, index: int, worker: str) -> StepDecision | None:
    """A pure step of an unlimited run (``RunPlan.claimless``): run the skill first, then one statement opens
    and settles the attempt, fenced by the run being at this step with no attempt yet. Running a pure
    skill has no effect outside its output, so when the fence fails (a duplicate delivery, a cancel, the
    run moved on) nothing happened: None, and the claimed path decides."""
    step, skill = rp.plan.steps[index], rp.skills[index]
    assert skill is not None
    started = datetime.now(UTC)
    c = Claim(rp=rp, step=step, skill=skill, worker=worker, version=0,
              opened=step_store.OpenAttempt(index=index, step_id=step.id, skill=skill.ref, attempt=1),
              reserved=budget.NOTHING, spend=budget.Spend(), budget_warned=True, capabilities={})
    settled, plan, admitted = _write(c, outcomes.finished(c, _run_skill(c, skill, step.args, _context(c))), started)
    if not settled:
        return None
    plan.count()
    return replace(plan.decision, admitted=admitted) if admitted else plan.decision


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
        cost_usd=reservation.cost_usd, tokens=reservation.tokens, poison=settings.poison_deliveries,
        plan_revision=rp.revision)
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
    opened = step_store.OpenAttempt(index=index, step_id=step.id, skill=skill.ref, attempt=row["attempt"],
                                    retry_base=row["retry_base"])
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
    if st["plan_revision"] != rp.revision and st["status"] in ("queued", "running"):
        # a person amended a step since this process cached the plan: read it again, then claim anew
        run_plan(rp.run_id, revision=st["plan_revision"])
        return StepDecision.retry(0, "the run's plan was amended; claiming with the amended plan")
    if st["status"] in FINAL_RUN_STATUSES or st["status"] == "waiting":
        return StepDecision.stop(f"run is {st['status']}")  # a waiting run goes on when its signal queues it
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
    poison = get_settings().poison_deliveries
    if st["attempt_open"] and st["attempt_deliveries"] >= poison:
        # Every delivery of this attempt died (killed, timed out, or raised outside the skill): another one
        # would die too. Quarantine the step instead of feeding the loop.
        skill = rp.skills[step.index]
        return _quarantine(rp, rp.run_id, step.index, step.id, skill.ref if skill is not None else step.skill, fence,
                           st["attempt"], estimate,
                           f"the step's deliveries died {st['attempt_deliveries']} times in a row "
                           f"(AOS_POISON_DELIVERIES={poison}): the worker was killed or timed out running it")
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
    settled, admitted = _write_settlement(rp, settlement)
    if not settled:
        return StepDecision.stop("run changed meanwhile")
    metrics.run_finished("failed")
    return replace(decision, admitted=admitted)


def _quarantine(rp: RunPlan | None, run_id: uuid.UUID, index: int, step_id: str, skill_ref: str,
                fence: tuple[int, str | None], open_attempt: int | None, estimate: budget.Estimate,
                message: str) -> StepDecision:
    settlement, decision = outcomes.poisoned(run_id, index, step_id, skill_ref, fence, open_attempt=open_attempt,
                                             reserved=budget.reservation_for(estimate), message=message)
    if rp is not None:
        settled, admitted = _write_settlement(rp, settlement)
    else:  # a plan this code cannot load: no concurrency slot to hand on that it could know of
        with direct.durable() as conn:
            settled, admitted = step_store.settle(conn, settlement), ()
    if not settled:
        return StepDecision.stop("run changed meanwhile")
    log.error("run %s step %s quarantined (STEP_POISONED): %s", run_id, step_id, message)
    metrics.run_finished("failed")
    metrics.dead_letter_created("step")
    return replace(decision, admitted=admitted) if admitted else decision


def step_crashed(run_id: str, step_index: int, worker: str, abandoned: Sequence[str], crashes: int,
                 error: str) -> StepDecision | None:
    """A delivery raised outside the skill (a bug, a stored plan this code cannot load, an input no limit
    caught): after AOS_POISON_DELIVERIES such deliveries in a row the step is quarantined and the decision
    returned; before that, None (deliver again)."""
    poison = get_settings().poison_deliveries
    if crashes < poison:
        return None
    with as_operator():  # the plan may not even load: no tenant to scope to, so the operator's role decides
        return _quarantine_crashed(run_id, step_index, worker, abandoned, crashes, error, poison)


def _quarantine_crashed(run_id: str, step_index: int, worker: str, abandoned: Sequence[str], crashes: int,
                        error: str, poison: int) -> StepDecision | None:
    rid = uuid.UUID(run_id)
    try:
        rp = run_plan(rid)
    except Exception:  # noqa: BLE001 — the plan itself may be what kills the step path
        log.exception("run %s: its plan cannot be loaded", run_id)
        rp = None
    step = rp.plan.steps[step_index] if rp is not None and step_index < rp.step_count else None
    skill = rp.skills[step_index] if rp is not None and step is not None else None
    with direct.relaxed() as conn:
        st = step_store.run_state(conn, rid, step_index)
    if st is None or st["status"] in FINAL_RUN_STATUSES or st["next_step"] != step_index:
        return StepDecision.stop("run changed meanwhile")
    owner = st["lease_owner"]
    if st["lease_expires_at"] is not None and st["lease_expires_at"] > st["now"] and owner and \
            owner != worker and owner not in abandoned:
        return None  # a live delivery elsewhere owns the step: not ours to quarantine
    estimate = skill.cost_model.estimate(step.args) if skill is not None and step is not None else budget.Estimate()
    return _quarantine(rp, rid, step_index, step.id if step is not None else f"#{step_index}",
                       skill.ref if skill is not None else (step.skill if step is not None else "unknown"),
                       (st["version"], owner), st["attempt"] if st["attempt_open"] else None, estimate,
                       f"{crashes} deliveries in a row raised outside the skill (AOS_POISON_DELIVERIES={poison}); "
                       f"the last: {error}")


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
    if skill.waits_for_signal and c.rp.replay_of is None:  # issue 15: park the run, or read what came back
        with direct.relaxed() as conn:
            wait = step_store.step_wait(conn, c.rp.run_id, c.step.index, c.opened.attempt)
        signal = signals.arrived(wait)
        if signal is None:
            spec = skill.wait_spec(args) if wait is None or wait["status"] != "waiting" else {
                "signal": wait["signal"], "reopen": True}
            return outcomes.Attempt(StructuredOutcome.success(None), None, stored_args, args_json, wait=spec)
        ctx.signal = signal
    if c.rp.replay_of is not None and not skill.deterministic:  # a golden replay answers from the recording
        with direct.relaxed() as conn:
            skill = ReplayedSkill(skill, step_store.replay_call(conn, c.rp.run_id, c.step.id, c.opened.attempt, role))
    upstream = skill.upstream(args, ctx) if c.rp.replay_of is None else None
    if upstream is not None:  # issue 15: a call behind its upstream's circuit breaker
        return _guarded_call(c, skill, args, ctx, upstream, stored_args, args_json)
    with metrics.step_running(skill.name):
        outcome, raw = invoke_skill(skill, args, ctx)
    return outcomes.Attempt(outcome, raw, stored_args, args_json)


# --- issue 15: circuit breakers and waiting steps -------------------------------------------------------------


def _guarded_call(c: Claim, skill: Skill, args: dict[str, Any], ctx: SkillContext, upstream: str, stored_args: Any,
                  args_json: str) -> outcomes.Attempt:
    """The call, unless the upstream's breaker is open: then a CIRCUIT_OPEN failure to defer (no call made)."""
    breakers = circuit.breakers()
    verdict = breakers.check(c.rp.tenant_id, skill.name, upstream) if breakers is not None else None
    if verdict is not None and not verdict.allow:
        err = outcome_error(CATALOG.get("CIRCUIT_OPEN"), f"the circuit breaker of {upstream} is open; retrying in "
                            f"{verdict.countdown:.1f}s", {"upstream": upstream})
        return outcomes.Attempt(StructuredOutcome.failure(err), None, stored_args, args_json,
                                deferred_s=verdict.countdown)
    with metrics.step_running(skill.name):
        outcome, raw = invoke_skill(skill, args, ctx)
    events = breakers.record(verdict, c.rp.tenant_id, skill.name, upstream, outcome) if breakers is not None else []
    return outcomes.Attempt(outcome, raw, stored_args, args_json, events=events or None)


def _park(c: Claim, att: outcomes.Attempt) -> StepDecision:
    """A step that ends its delivery without ending its attempt: a waiting skill parks the run for its signal;
    a call an open breaker refused gives the claim back without spending the attempt and retries later."""
    if att.wait is not None:
        return _settle(c, outcomes.waiting(c, att))
    wake_at, events, decision = outcomes.deferred(c, att)
    with direct.durable() as conn:
        if not step_store.defer(conn, c.rp.run_id, c.version, c.worker, wake_at, events):
            return StepDecision.stop("lost the step's lease before finishing")
    metrics.step_retried(c.skill.name, "CIRCUIT_OPEN")
    return decision


# --- settle ------------------------------------------------------------------------------------------


def _write_settlement(rp: RunPlan, settlement: step_store.Settlement) -> tuple[bool, tuple[int, ...]]:
    """Write a settlement: one durable statement; when it ends a run that a concurrency limit applies to,
    the slot it frees goes to the next waiting runs in the same transaction (their enqueues returned)."""
    with direct.durable() as conn:
        if not (settlement.final and rp.limited):
            return step_store.settle(conn, settlement), ()
        with conn.transaction():
            if not step_store.settle(conn, settlement):
                return False, ()
            return True, tuple(concurrency.admit(conn, rp.tenant_id).values())


def _write(c: Claim, plan: outcomes.Settled,
           claimless_since: datetime | None = None) -> tuple[bool, outcomes.Settled, tuple[int, ...]]:
    """Write the settlement: whether its fence held, the settlement written (or refused), the runs it admitted."""
    if claimless_since is not None:
        _claimless(plan.settlement, c.rp, claimless_since)
    try:
        settled, admitted = _write_settlement(c.rp, plan.settlement)
        return settled, plan, admitted
    except (psycopg.DataError, UnicodeEncodeError) as exc:
        # Postgres refused what the skill produced (a string jsonb cannot hold): the step fails, the run
        # goes on being handled like any failure — never a message redelivered forever.
        log.warning("run %s step %s: output not storable: %s", c.rp.run_id, c.step.id, exc)
        plan = outcomes.finished(c, _failed_attempt("DATA_NOT_STORABLE", f"{type(exc).__name__}: {exc}"[:500]))
        if claimless_since is not None:
            _claimless(plan.settlement, c.rp, claimless_since)
        settled, admitted = _write_settlement(c.rp, plan.settlement)
        return settled, plan, admitted


def _claimless(settlement: step_store.Settlement, rp: RunPlan, since: datetime) -> None:
    """A settle that opens the attempt too, fenced by the run being at the step and the plan's revision."""
    settlement.claimless, settlement.started_at, settlement.plan_revision = True, since, rp.revision


def _settle(c: Claim, plan: outcomes.Settled) -> StepDecision:
    settled, plan, admitted = _write(c, plan)
    if not settled:
        # Our lease expired and another delivery took the step over (or the run was cancelled): nothing
        # was written; the partial unique index would refuse a second success anyway.
        return StepDecision.stop("lost the step's lease before finishing")
    if plan.settlement.cost_usd:  # a step that cost something may take the tenant's day past 80 % of its budget
        quotas.warn_daily_budget(c.rp.tenant_id, c.rp.run_id, plan.settlement.day)
    plan.count()
    return replace(plan.decision, admitted=admitted) if admitted else plan.decision

