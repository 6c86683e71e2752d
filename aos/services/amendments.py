"""Amending one step of a failed run: the audited way a person changes a pinned plan (issue 14).

A run's plan is pinned at submission: its ``plan_hash``, its skill versions, what a golden file records. A
recovery suggestion may say that the failed step needs a longer ``timeout_s``, more ``max_attempts``,
corrected ``args`` or a ``fallback_skill``; applying it amends *that step of that run*, nothing else:

- the amended plan is validated exactly as submission validates one (``parse_plan`` with the run's inputs
  and pinned skills, then the agent's capability policy); an invalid change is ``AMENDMENT_INVALID`` and
  nothing is written;
- the run's stored plan gets the amended step, fenced by the run's version and its being failed at that
  step; ``plan_hash`` stays the submitted plan's: it names what was submitted, the amendments say what
  changed since;
- a ``run_amendments`` row keeps what changed (each field ``from`` → ``to``), the step's hash before and
  after, the suggestion and who applied it; a ``run.amended`` event says it on the timeline;
- ``runs.plan_revision`` grows by one: every claim is fenced by it, so no worker runs the step from a plan
  it cached before (``aos.services.enqueue.run_plan``).

The caller requeues the run in the same transaction (``aos.services.recovery.apply_suggestion``).
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aos.db.models import Run, RunAmendment
from aos.errors import AosError
from aos.plan import parse_plan
from aos.plan.model import plan_hash
from aos.redaction import redact_args
from aos.services import timeline
from aos.services.capabilities import capability_problems, load_agent
from aos.services.tenancy import TenantContext
from aos.skills.base import Skill
from aos.skills.registry import default_registry

# What a suggestion may change of its step; each is a field of the plan's step (docs/plans.md).
AMENDABLE = ("timeout_s", "fallback_skill", "args", "max_attempts")
AMENDABLE_STATUSES = ("failed", "dead_lettered")
_MISSING = object()


def plan_changes(parameters: dict[str, Any] | None) -> list[str]:
    """The amendable fields among a suggestion's parameters (empty: it changes timing only)."""
    return [k for k in AMENDABLE if k in (parameters or {})]


def amend_step(s: Session, ctx: TenantContext, run: Run, parameters: dict[str, Any], *,
               suggestion_id: uuid.UUID | None, applied_by: str) -> RunAmendment | None:
    """Amend the run's failed step (``run.next_step``) with ``parameters``; the amendment, or None when they
    change nothing. ``run`` is refreshed: its version is the amended row's."""
    index = run.next_step
    steps = list((run.plan or {}).get("steps") or [])
    before = steps[index]
    skill = _pinned_skill(run, before)
    after, changes = _amended(before, skill, {k: parameters[k] for k in plan_changes(parameters)})
    if not changes:
        return None
    plan = {**run.plan, "steps": [*steps[:index], after, *steps[index + 1:]]}
    _validate(s, ctx, run, plan, index)
    revision = s.execute(
        update(Run).where(Run.id == run.id, Run.version == run.version, Run.status.in_(AMENDABLE_STATUSES),
                          Run.next_step == index)
        .values(plan=plan, plan_revision=Run.plan_revision + 1, version=Run.version + 1)
        .returning(Run.plan_revision).execution_options(synchronize_session=False)).scalar()
    if revision is None:
        raise AosError("CONFLICT", "the run changed while it was being amended; read it again")
    s.refresh(run)
    row = RunAmendment(tenant_id=run.tenant_id, run_id=run.id, plan_revision=revision, step_index=index,
                       step_id=str(before.get("id")), after_attempt=run.attempt, changes=changes,
                       step_hash_before=plan_hash(before), step_hash_after=plan_hash(after),
                       suggestion_id=suggestion_id, applied_by=applied_by, key_id=ctx.key_id)
    s.add(row)
    s.flush()
    timeline.record(s, run.tenant_id, run.id, "run.amended", step_id=row.step_id, amendment_id=str(row.id),
                    suggestion_id=str(suggestion_id) if suggestion_id else None, changes=changes,
                    summary=summary(row))
    return row


def would_change(run: Run, parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What ``amend_step`` would change of the run's failed step, field → {"from", "to"}, written nowhere and not
    validated (applying validates): a person reads it before choosing to apply."""
    before = ((run.plan or {}).get("steps") or [])[run.next_step]
    return _amended(before, _pinned_skill(run, before), {k: parameters[k] for k in plan_changes(parameters)})[1]


def _pinned_skill(run: Run, step: dict[str, Any]) -> Skill | None:
    return _skill((run.skill_versions or {}).get(str(step.get("id")), step.get("skill")))


def _skill(ref: Any) -> Skill | None:
    try:
        return default_registry().resolve(str(ref))
    except AosError:
        return None  # validation names it


def _amended(step: dict[str, Any], skill: Skill | None,
             wanted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The step with the wanted changes, and what changed: field → {"from", "to"} (the value in force before,
    a skill's default included, so that a person reads "timeout_s 30→60"; args shown as the skill's
    redaction shows them, never a secret). With a ``fallback_skill``, ``args`` are the fallback's."""
    out = copy.deepcopy(step)
    changes: dict[str, dict[str, Any]] = {}
    if "timeout_s" in wanted:
        was = step.get("timeout_s", skill.default_timeout_s if skill else None)
        out["timeout_s"] = wanted["timeout_s"]
        changes["timeout_s"] = {"from": was, "to": wanted["timeout_s"]}
    if "max_attempts" in wanted:
        retry = dict(step.get("retry") or {})
        was = retry.get("max_attempts", skill.default_retry.max_attempts if skill else None)
        out["retry"] = {**retry, "max_attempts": wanted["max_attempts"]}
        changes["max_attempts"] = {"from": was, "to": wanted["max_attempts"]}
    fallback_args = wanted.pop("args") if "fallback_skill" in wanted and "args" in wanted else None
    if "args" in wanted:
        # the fields given replace the step's own; the others stay (a writer saw sanitised args, so a field it
        # left out may hold a secret it never saw)
        new, old = wanted["args"], step.get("args") or {}
        if isinstance(new, dict):
            out["args"] = {**old, **new}
            touched = sorted(k for k in new if old.get(k, _MISSING) != new[k])
            if touched:
                changes["args"] = {"from": redact_args(skill, {k: old[k] for k in touched if k in old}),
                                   "to": redact_args(skill, {k: new[k] for k in touched})}
        else:
            out["args"] = new  # not an object: validation says so, with the path
            changes["args"] = {"from": None, "to": new}
    if "fallback_skill" in wanted:
        on_error = dict(step.get("on_error") or {})
        fallback = on_error.get("fallback") if on_error.get("mode") == "FALLBACK" else None
        was = fallback.get("skill") if isinstance(fallback, dict) else None
        # the fallback gets the suggestion's args when it has some (they are the fallback's then, the step keeps its
        # own), else the step's: the same request to another version or provider
        args = fallback_args if fallback_args is not None else out.get("args", {})
        was_args = fallback.get("args") if isinstance(fallback, dict) else None
        if was != wanted["fallback_skill"] or (fallback_args is not None and was_args != fallback_args):
            out["on_error"] = {"mode": "FALLBACK", "fallback": {"skill": wanted["fallback_skill"], "args": args}}
            fb_skill = _skill(wanted["fallback_skill"])
            changes["fallback_skill"] = {"from": was, "to": wanted["fallback_skill"],
                                         "args": redact_args(fb_skill, args)}
    for field in [f for f in ("timeout_s", "max_attempts") if f in changes]:
        if changes[field]["from"] == changes[field]["to"]:
            del changes[field]
    return (out, changes) if changes else (step, {})


def _validate(s: Session, ctx: TenantContext, run: Run, plan: dict[str, Any], index: int) -> None:
    """Refuse what submission would refuse: the whole plan, against the skill versions the run is pinned to,
    then the agent's capability policy."""
    pinned = copy.deepcopy(plan)
    for st in pinned.get("steps") or []:
        if isinstance(st, dict) and st.get("id") in (run.skill_versions or {}):
            st["skill"] = run.skill_versions[st["id"]]
    step_id = plan["steps"][index].get("id")
    try:
        parsed = parse_plan(pinned, default_registry(), inputs=run.inputs)
        problems = capability_problems(load_agent(s, ctx, run.agent_id), parsed) if run.agent_id else []
    except AosError as exc:
        problems = exc.problems or [{"path": "$", "code": exc.code, "message": exc.message}]
    if problems:
        first = problems[0]
        raise AosError("AMENDMENT_INVALID", f"the amended step {step_id!r} is not valid: {first['path']}: "
                       f"{first['message']}; nothing was changed", problems=problems,
                       details={"step_id": step_id, "step_index": index})


def summary(row: RunAmendment) -> str:
    """One line a person reads: step 0 (fetch) amended by suggestion …: timeout_s 30→60."""
    parts = []
    for field, change in row.changes.items():
        if field == "args":  # the values may be long or secret: the timeline and the API carry them, redacted
            to = change.get("to")
            parts.append(f"args {', '.join(sorted(to))} changed" if isinstance(to, dict) else "args replaced")
        else:
            parts.append(f"{field} {_shown(change.get('from'))}→{_shown(change.get('to'))}")
    by = f"suggestion {row.suggestion_id}" if row.suggestion_id else row.applied_by
    return f"step {row.step_index} ({row.step_id}) amended by {by}: {'; '.join(parts)}"


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def view(row: RunAmendment) -> dict[str, Any]:
    return {"id": str(row.id), "plan_revision": row.plan_revision, "step_index": row.step_index,
            "step_id": row.step_id, "after_attempt": row.after_attempt, "changes": dict(row.changes),
            "step_hash_before": row.step_hash_before, "step_hash_after": row.step_hash_after,
            "suggestion_id": str(row.suggestion_id) if row.suggestion_id else None, "applied_by": row.applied_by,
            "created_at": row.created_at.isoformat() if row.created_at else None, "summary": summary(row)}


def amendments_of(s: Session, run: Run) -> list[RunAmendment]:
    """The run's amendments, oldest first (no query for a run never amended)."""
    if not run.plan_revision:
        return []
    return list(s.scalars(select(RunAmendment).where(RunAmendment.run_id == run.id,
                                                     RunAmendment.tenant_id == run.tenant_id)
                          .order_by(RunAmendment.plan_revision)))


# --- a golden replay re-enacts a recorded amendment (aos.services.replay_amendments) -----------------------


def parameters_of(changes: dict[str, Any]) -> dict[str, Any]:
    """The parameters that make ``changes`` (as ``_amended`` wrote them) again: a golden replay amends its run with
    them where the recording was amended."""
    params: dict[str, Any] = {f: changes[f]["to"] for f in ("timeout_s", "max_attempts", "args") if f in changes}
    if "fallback_skill" in changes:
        fallback = changes["fallback_skill"]
        params["fallback_skill"] = fallback["to"]
        if "args" in fallback:  # the fallback's own args (``_amended`` takes args beside a fallback_skill as its)
            params["args"] = fallback["args"]
    return params


def undone(step: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps ``changes`` may have been made to, the likeliest first. A change keeps the value that was in force
    (a skill's default included), not whether the step wrote it, nor the fields of an ``on_error`` it replaced: each
    reading is a candidate, and the amendment's ``step_hash_before`` tells which one it was. Empty when the change
    cannot be undone (args replaced by a non-object, which validation never lets through)."""
    candidates = [copy.deepcopy(step)]
    for field, change in changes.items():
        was = change.get("from")
        if field == "timeout_s":
            candidates = [c for st in candidates for c in _either(st, "timeout_s", was)]
        elif field == "max_attempts":
            candidates = [c for st in candidates for c in _retry_undone(st, was)]
        elif field == "args":
            to = change.get("to")
            if not isinstance(was, dict) or not isinstance(to, dict):
                return []
            for st in candidates:
                args = dict(st.get("args") or {})
                for key in to:  # a key the change added is dropped, one it changed gets its value back
                    if key in was:
                        args[key] = was[key]
                    else:
                        args.pop(key, None)
                st["args"] = args
        elif field == "fallback_skill":
            candidates = [c for st in candidates for c in _fallback_undone(st, was)]
    return candidates


def _either(step: dict[str, Any], field: str, was: Any) -> list[dict[str, Any]]:
    written = {**step, field: was}
    absent = {k: v for k, v in step.items() if k != field}
    return [absent] if was is None else [written, absent]


def _retry_undone(step: dict[str, Any], was: Any) -> list[dict[str, Any]]:
    retry = {k: v for k, v in (step.get("retry") or {}).items() if k != "max_attempts"}
    others = {k: v for k, v in step.items() if k != "retry"}
    out = [] if was is None else [{**others, "retry": {**retry, "max_attempts": was}}]
    return [*out, {**others, "retry": retry}] + ([] if retry else [others])


def _fallback_undone(step: dict[str, Any], was: Any) -> list[dict[str, Any]]:
    others = {k: v for k, v in step.items() if k != "on_error"}
    if was is None:  # the step had no fallback: no on_error, or a mode that let the run fail
        return [others, *({**others, "on_error": {"mode": mode}} for mode in ("ABORT", "RETRY"))]
    return [{**others, "on_error": {"mode": "FALLBACK", "fallback": {"skill": was, "args": step.get("args", {})}}},
            {**others, "on_error": {"mode": "FALLBACK", "fallback": {"skill": was}}}]
