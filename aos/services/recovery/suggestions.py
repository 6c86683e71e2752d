"""Suggestions for failed runs: made after the failure is committed, shown, applied, judged, settled.

``suggest_for_run`` runs in a worker (the ``aos.recovery.suggest`` task), never on the step's path: it
reads the failed run, builds the failure's signature and sanitised context, asks ``lookup`` and stores one
suggestion per failure (a redelivered task finds it and stops). A tenant that enabled auto-apply gets its
safe suggestions (a retry of the step with changed timing) applied at once — the retry itself still waits
out the suggestion's ``delay_s``.

Applying resumes the run from the failed step (``services.enqueue.requeue``), after amending the step when
the suggestion changes it (``services.amendments``: a longer timeout, more attempts, corrected args, a
fallback skill), all in one transaction. The step runs no earlier than the suggestion's ``delay_s`` after it
was applied, the way a retry waits: the run's ``wake_at`` says when and its enqueue is due then. The
suggestion is then ``applied`` until ``settle`` sees the step succeed (its pattern's success count grows) or
the run fail at that step again (its failure count grows; under the floor the pattern is escalated: dropped
from the cache, skipped by similarity, the LLM asked anew), or the run cancelled first (``abandoned``: it counts
neither way).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db.models import RecoverySuggestion, Run
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import amendments, enqueue, timeline
from aos.services.amendments import plan_changes
from aos.services.publisher import Publisher
from aos.services.recovery import patterns, quota
from aos.services.recovery.lookup import Answer, exact_cache, lookup
from aos.services.recovery.sanitize import recovery_logger, sanitize_for_embedding
from aos.services.recovery.signature import signature_of
from aos.services.recovery.writer import MAX_DELAY_S, SAFE_MODES, FailureContext
from aos.services.runs import deliver_admitted
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry

log = recovery_logger(__name__)
SYSTEM_SCOPES = frozenset({"runs:read", "runs:write"})


# --- making one -------------------------------------------------------------------------------------------


def suggest_for_run(run_id: str | uuid.UUID, publisher: Publisher | None = None) -> dict[str, Any] | None:
    """The suggestion for the run's failure (made once per failure); None when the run is not failed, or is a
    golden replay."""
    settings = get_settings()
    rid = uuid.UUID(str(run_id))
    settle_run(rid)  # a suggestion applied earlier to this run has its answer now
    with session_scope() as s:
        run = s.get(Run, rid)
        if run is None or run.status not in ("failed", "dead_lettered") or not run.error_code:
            return None
        if run.replay_of is not None:
            # a golden replay fails as its recording did: a suggestion (auto-applied, above all) would make it
            # diverge, and the recorded run had its own
            return None
        existing = _for_failure(s, run)
        if existing is not None:
            return view(s, existing)
        step = _plan_step(run)
        ref = _skill_ref(run, step)
        skill = ref.split("@", 1)[0]  # patterns outlive skill upgrades
        sig = signature_of(run.error_code, skill, run.error_message or "")
        ctx = FailureContext.of(code=run.error_code, skill=skill, message=run.error_message or "",
                                args=_stored_args(s, run), args_schema=_args_schema(ref),
                                timeout_s=step.get("timeout_s"), attempts=run.attempt)
        answer = lookup(s, settings, run.tenant_id, sig, ctx)
        row = _insert(s, run, step, sig.digest, answer)
        # auto-apply: timing-only retries; a change of the plan is a person's to make
        auto = quota.tenant_settings(s, run.tenant_id)["auto_apply"] and row.mode in SAFE_MODES \
            and not plan_changes(row.parameters)
        suggestion_id, tenant_id = row.id, run.tenant_id
        shown = view(s, row)
    if auto:
        try:
            return apply_suggestion(_system(tenant_id), rid, suggestion_id, publisher, by="auto")
        except AosError as exc:  # the run moved on meanwhile (a person resumed it): the suggestion stays offered
            log.info("run %s: auto-apply skipped: %s", rid, exc)
    return shown


def _for_failure(s: Session, run: Run) -> RecoverySuggestion | None:
    return s.query(RecoverySuggestion).filter_by(run_id=run.id, step_index=run.next_step,
                                                 attempt=run.attempt).one_or_none()


def _plan_step(run: Run) -> dict[str, Any]:
    steps = (run.plan or {}).get("steps") or []
    return steps[run.next_step] if 0 <= run.next_step < len(steps) else {"id": f"#{run.next_step}", "skill": ""}


def _skill_ref(run: Run, step: dict[str, Any]) -> str:
    """The step's pinned skill (``name@version``)."""
    return str((run.skill_versions or {}).get(str(step.get("id")), step.get("skill", "")))


def _stored_args(s: Session, run: Run) -> Any:
    # what the checkpoint kept (secrets masked by aos.redaction); the writer sanitises it again
    return s.execute(text("SELECT args FROM checkpoints WHERE run_id = :r AND step_index = :i "
                          "ORDER BY attempt DESC LIMIT 1"), {"r": run.id, "i": run.next_step}).scalar()


def _args_schema(skill: str) -> dict[str, Any]:
    try:
        return dict(default_registry().resolve(skill).input_schema)
    except AosError:
        return {}


def _insert(s: Session, run: Run, step: dict[str, Any], signature: str, answer: Answer) -> RecoverySuggestion:
    """Store the failure's suggestion (once: a redelivered task finds the first) and announce it: a `run.recovery`
    event on the run's timeline, which also leaves as a webhook."""
    sug = answer.suggestion
    created = s.execute(text(
        "INSERT INTO recovery_suggestions (id, tenant_id, run_id, step_index, step_id, attempt, error_code, "
        "signature, pattern_id, layer, mode, parameters, explanation, confidence, similarity, meta) VALUES "
        "(:id, :t, :r, :i, :sid, :a, :c, :sig, :p, :layer, :mode, CAST(:params AS jsonb), :expl, :conf, :sim, "
        "CAST(:meta AS jsonb)) ON CONFLICT (run_id, step_index, attempt) DO NOTHING RETURNING id"),
        {"id": uuid.uuid4(), "t": run.tenant_id, "r": run.id, "i": run.next_step, "sid": str(step.get("id")),
         "a": run.attempt, "c": run.error_code, "sig": signature, "p": answer.pattern_id, "layer": answer.layer,
         "mode": sug["mode"], "params": patterns._json(sug.get("parameters") or {}), "expl": sug["explanation"],
         "conf": round(float(sug["confidence"]), 3), "sim": answer.similarity,
         "meta": patterns._json(answer.meta)}).scalar()
    row = _for_failure(s, run)
    assert row is not None
    if created is not None:
        timeline.record(s, run.tenant_id, run.id, "run.recovery", step_id=row.step_id, suggestion_id=str(row.id),
                        code=row.error_code, layer=row.layer, mode=row.mode, parameters=dict(row.parameters or {}),
                        explanation=row.explanation, confidence=float(row.confidence), pattern_id=row.pattern_id,
                        apply_command=f"aos runs recover {run.id} --apply --suggestion {row.id}")
    return row


def _system(tenant_id: uuid.UUID) -> TenantContext:
    return TenantContext(tenant_id=tenant_id, tenant_name="", key_id=None, scopes=SYSTEM_SCOPES)


# --- showing them ------------------------------------------------------------------------------------------


def view(s: Session, row: RecoverySuggestion) -> dict[str, Any]:
    rate = None
    if row.pattern_id is not None:
        p = patterns.get(s, row.tenant_id, row.pattern_id)
        rate = p.success_rate if p else None
    return {
        "id": str(row.id), "run_id": str(row.run_id), "step_id": row.step_id, "step_index": row.step_index,
        "error_code": row.error_code, "signature": row.signature, "layer": row.layer, "mode": row.mode,
        "parameters": dict(row.parameters or {}), "explanation": row.explanation,
        "confidence": float(row.confidence), "similarity": float(row.similarity) if row.similarity is not None else None,
        "pattern_id": row.pattern_id, "success_rate": rate, "status": row.status, "helpful": row.helpful,
        "applied_by": row.applied_by, "applied_at": _iso(row.applied_at), "settled_at": _iso(row.settled_at),
        "metadata": dict(row.meta or {}), "created_at": _iso(row.created_at),
        "apply_command": f"aos runs recover {row.run_id} --apply --suggestion {row.id}",
    }


def list_for_run(ctx: TenantContext, run_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """The run's suggestions, newest first (404 for a run the tenant does not have)."""
    with session_scope() as s:
        run = _run(s, ctx, run_id)
        rows = s.query(RecoverySuggestion).filter_by(tenant_id=ctx.tenant_id, run_id=run.id) \
            .order_by(RecoverySuggestion.created_at.desc()).all()
        return [view(s, r) for r in rows]


def _run(s: Session, ctx: TenantContext, run_id: str | uuid.UUID) -> Run:
    try:
        rid = uuid.UUID(str(run_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no run {run_id!r}") from None
    run = s.query(Run).filter_by(id=rid, tenant_id=ctx.tenant_id).one_or_none()
    if run is None:  # another tenant's run is a 404 too
        raise AosError("NOT_FOUND", f"no run {run_id!r}")
    return run


def _suggestion(s: Session, ctx: TenantContext, run: Run, suggestion_id: str | uuid.UUID,
                *, lock: bool = False) -> RecoverySuggestion:
    try:
        sid = uuid.UUID(str(suggestion_id))
    except ValueError:
        raise AosError("SUGGESTION_NOT_FOUND", f"no suggestion {suggestion_id!r} for run {run.id}") from None
    q = s.query(RecoverySuggestion).filter_by(id=sid, tenant_id=ctx.tenant_id, run_id=run.id)
    row = (q.with_for_update() if lock else q).one_or_none()
    if row is None:
        raise AosError("SUGGESTION_NOT_FOUND", f"no suggestion {suggestion_id!r} for run {run.id}")
    return row


# --- feedback and apply --------------------------------------------------------------------------------------


def feedback(ctx: TenantContext, run_id: str | uuid.UUID, suggestion_id: str | uuid.UUID, *, helpful: bool,
             note: str | None = None) -> dict[str, Any]:
    """A person's verdict. "Not helpful" on a suggestion nobody applied counts as one failed use of its pattern
    (the first verdict only); an applied suggestion is judged by what the step did."""
    with session_scope() as s:
        run = _run(s, ctx, run_id)
        row = _suggestion(s, ctx, run, suggestion_id, lock=True)
        first = row.helpful is None
        row.helpful, row.feedback_note = helpful, sanitize_for_embedding(note) if note else None
        if first and not helpful and row.status == "offered" and row.pattern_id is not None:
            _count(s, row.tenant_id, row.pattern_id, succeeded=False)
        s.flush()
        return view(s, row)


# What to do instead of applying a suggestion of a mode AOS does not carry out itself.
INSTEAD = {
    "ABORT": "the step cannot succeed as written: fix the plan and submit it as a new run",
    "SKIP": "AOS does not skip a failed step of a run: submit the plan with the step's on_error SKIP as a new run",
    "ESCALATE": "a person decides: look into the failure, then resume the run (aos runs resume) or submit a fixed "
                "plan as a new run",
    "CIRCUIT_OPEN": "the upstream's circuit breaker is open: wait until it closes, then resume the run",
    "FALLBACK": "it names no fallback_skill to amend the step with: submit the plan with the step's on_error "
                "FALLBACK as a new run",
}


def apply_suggestion(ctx: TenantContext, run_id: str | uuid.UUID, suggestion_id: str | uuid.UUID,
                     publisher: Publisher | None, *, by: str = "person") -> dict[str, Any]:
    """Apply a suggestion: amend the failed step when the suggestion changes it, and resume the run from that
    step (after the suggestion's ``delay_s``), in one transaction. Idempotent: an applied one is returned as is."""
    with session_scope() as s:
        run = _run(s, ctx, run_id)
        row = _suggestion(s, ctx, run, suggestion_id, lock=True)
        if row.status != "offered":
            return view(s, row)
        changes = plan_changes(row.parameters)
        _check_applicable(row, run, changes, by)
        if changes:
            amendments.amend_step(s, ctx, run, dict(row.parameters), suggestion_id=row.id, applied_by=by)
        row.status, row.applied_by, row.applied_at = "applied", by, datetime.now(UTC)
        outbox_ids = enqueue.requeue(s, run, reason="recovery", fresh_retries=True,
                                     not_before=_resume_at(row.parameters, row.applied_at))
        suggestion = row.id
    deliver_admitted(outbox_ids, publisher)
    with session_scope() as s:
        return view(s, s.get(RecoverySuggestion, suggestion))  # type: ignore[arg-type]


def previews(ctx: TenantContext, run_id: str | uuid.UUID) -> dict[str, dict[str, Any]]:
    """What applying each of the run's offered suggestions would do, by suggestion id, read before a person
    applies one: ``applicable``; if not, ``refusal`` (the code and message applying would answer, which says what
    to do instead); else the step it resumes from, after ``delay_s`` (None: at once), and the ``changes`` to that
    step (field → {"from", "to"}; empty: timing only). The same checks as ``apply_suggestion``, nothing written."""
    out: dict[str, dict[str, Any]] = {}
    with session_scope() as s:
        run = _run(s, ctx, run_id)
        for row in s.query(RecoverySuggestion).filter_by(tenant_id=ctx.tenant_id, run_id=run.id, status="offered"):
            changes = plan_changes(row.parameters)
            seen: dict[str, Any] = {"step_index": row.step_index, "step_id": row.step_id, "applicable": True,
                                    "refusal": None, "delay_s": None, "changes": {}}
            try:
                _check_applicable(row, run, changes, "person")
            except AosError as exc:
                seen.update(applicable=False, refusal={"code": exc.code, "message": exc.message})
            else:
                seen["delay_s"] = _delay_s(row.parameters)
                seen["changes"] = amendments.would_change(run, dict(row.parameters)) if changes else {}
            out[str(row.id)] = seen
    return out


def _resume_at(parameters: dict[str, Any] | None, applied_at: datetime) -> datetime | None:
    """When the step of an applied suggestion may run again: ``delay_s`` after it was applied (None: at once).
    A rate-limited step retried at once would only be refused again, so the delay is the suggestion's point."""
    delay = _delay_s(parameters)
    return applied_at + timedelta(seconds=delay) if delay else None


def _delay_s(parameters: dict[str, Any] | None) -> float | None:
    """The suggestion's ``delay_s`` as applying honours it: positive, at most MAX_DELAY_S; None otherwise."""
    delay = (parameters or {}).get("delay_s")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not delay > 0:
        return None
    return min(float(delay), MAX_DELAY_S)


def _check_applicable(row: RecoverySuggestion, run: Run, changes: list[str], by: str) -> None:
    if row.mode not in SAFE_MODES and not (row.mode == "FALLBACK" and "fallback_skill" in changes):
        raise AosError("SUGGESTION_NOT_APPLICABLE",
                       f"this suggestion is {row.mode}, which AOS does not carry out by itself: "
                       f"{INSTEAD.get(row.mode, 'decide what to do and resume the run or submit a new one')}",
                       details={"mode": row.mode, "plan_changes": changes})
    if changes and by != "person":  # auto-apply never gets here with one; this says why if it ever does
        raise AosError("SUGGESTION_NOT_APPLICABLE", "a suggestion that changes the plan is applied by a person only",
                       details={"mode": row.mode, "plan_changes": changes})
    if run.status not in amendments.AMENDABLE_STATUSES or run.next_step != row.step_index:
        raise AosError("SUGGESTION_NOT_APPLICABLE",
                       f"the run is {run.status} at step {run.next_step}; the suggestion is for a failure of "
                       f"step {row.step_index}", details={"run_status": run.status})


# --- what came of applied suggestions ------------------------------------------------------------------------


def settle(limit: int = 500) -> int:
    """Settle every applied suggestion whose step has succeeded or whose run failed at that step again."""
    with session_scope() as s:
        ids = s.execute(text("SELECT DISTINCT run_id FROM recovery_suggestions WHERE status = 'applied' LIMIT :n"),
                        {"n": limit}).scalars().all()
    return sum(settle_run(rid) for rid in ids)


def settle_run(run_id: uuid.UUID) -> int:
    settled = 0
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT sg.id, sg.tenant_id, sg.pattern_id, sg.step_index, sg.applied_at, r.status, r.next_step, "
            "EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = sg.run_id AND c.step_index = sg.step_index "
            "        AND c.status = 'succeeded' AND c.finished_at >= sg.applied_at) AS step_succeeded "
            "FROM recovery_suggestions sg JOIN runs r ON r.id = sg.run_id "
            "WHERE sg.run_id = :r AND sg.status = 'applied' FOR UPDATE OF sg"), {"r": run_id}).all()
        for r in rows:
            if r.step_succeeded:
                result = "succeeded"
            elif r.status in ("failed", "dead_lettered") and r.next_step == r.step_index:
                result = "failed"
            elif r.status == "cancelled":
                result = "abandoned"  # a person stopped the run before the step could answer: no verdict
            else:
                continue  # still queued or running: nothing to judge yet
            s.execute(text("UPDATE recovery_suggestions SET status = :st, settled_at = now() WHERE id = :id"),
                      {"st": result, "id": r.id})
            if r.pattern_id is not None and result != "abandoned":
                _count(s, r.tenant_id, r.pattern_id, succeeded=result == "succeeded")
            metrics.recovery_applied(result)
            settled += 1
    return settled


def _count(s: Session, tenant_id: uuid.UUID, pattern_id: int, *, succeeded: bool) -> None:
    settings = get_settings()
    p = patterns.count_use(s, tenant_id, pattern_id, succeeded=succeeded)
    if p is not None and not p.usable(settings.recovery_success_floor, settings.recovery_min_uses):
        exact_cache(settings).drop_pattern(p.id)  # escalated: the next lookup asks the LLM anew


# --- patterns, quota, settings ------------------------------------------------------------------------------


def list_patterns(ctx: TenantContext, *, limit: int = 50, code: str | None = None) -> list[dict[str, Any]]:
    settings = get_settings()
    with session_scope() as s:
        return [{"id": p.id, "error_code": p.error_code, "skill": p.skill, "signature": p.signature,
                 "message": p.message, "recovery": p.recovery, "source": p.source,
                 "success_count": p.success_count, "failure_count": p.failure_count, "success_rate": p.success_rate,
                 "escalated": not p.usable(settings.recovery_success_floor, settings.recovery_min_uses)}
                for p in patterns.listing(s, ctx.tenant_id, limit=limit, code=code)]


def quota_status(ctx: TenantContext) -> dict[str, Any]:
    with session_scope() as s:
        return quota.status(s, get_settings(), ctx.tenant_id)


def get_settings_of(ctx: TenantContext) -> dict[str, Any]:
    with session_scope() as s:
        return quota.tenant_settings(s, ctx.tenant_id)


def update_settings(ctx: TenantContext, *, auto_apply: bool | None = None, embedding_quota: int | None = None,
                    llm_quota: int | None = None, clear: tuple[str, ...] = ()) -> dict[str, Any]:
    """Change the tenant's recovery settings (fields not given keep their value; ``clear`` names quotas that go
    back to the deployment's default)."""
    with session_scope() as s:
        cur = quota.tenant_settings(s, ctx.tenant_id)
        new = {"auto_apply": cur["auto_apply"] if auto_apply is None else auto_apply,
               "embedding_quota": cur["embedding_quota"] if embedding_quota is None else embedding_quota,
               "llm_quota": cur["llm_quota"] if llm_quota is None else llm_quota}
        for name in clear:
            new[name] = None
        s.execute(text("INSERT INTO recovery_settings (tenant_id, auto_apply, embedding_quota, llm_quota) "
                       "VALUES (:t, :a, :e, :l) ON CONFLICT (tenant_id) DO UPDATE SET auto_apply = :a, "
                       "embedding_quota = :e, llm_quota = :l, updated_at = now()"),
                  {"t": ctx.tenant_id, "a": new["auto_apply"], "e": new["embedding_quota"], "l": new["llm_quota"]})
        return new


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
