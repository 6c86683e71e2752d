"""Golden files as use cases: record a run, verify a document, replay it through the real engine.

A run a person amended (``aos.services.amendments``) is recorded with its plan as amended and the
amendments beside it; its replay starts from the plan as submitted and re-enacts each amendment where the
recording says it came (``aos.services.replay_amendments``), so it matches attempt by attempt.

Replay submits the recorded plan as a new run (``runs.replay_of`` = the recorded
run) together with the recorded calls of its non-deterministic skills
(``golden_replay_calls``), in one transaction, and publishes it like any run: the
real workers execute it, deterministic skills for real, non-deterministic ones
answered from the recording (``aos.golden.replay``). When the run is final it is
recorded the same way as the original and compared step by step, by hash; the
first divergence is reported with its step, JSON path and both values.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aos.config import get_settings
from aos.db.models import FINAL_RUN_STATUSES, Checkpoint, GoldenReplayCall, Run, RunEvent
from aos.db.session import session_scope
from aos.errors import AosError
from aos.golden.diff import compare_steps
from aos.golden.record import AttemptFacts, RunFacts, amendment, build_body, seal
from aos.golden.sign import KeyRing
from aos.golden.verify import Verified, verify_document
from aos.plan import parse_plan
from aos.redaction import redact_args, redact_value
from aos.services import outbox
from aos.services.amendments import amendments_of
from aos.services.publisher import Publisher
from aos.services.replay_amendments import ROLE as AMENDMENT_ROLE
from aos.services.replay_amendments import awaiting_amendment, check_plan_hash, recorded_rows, submitted_plan
from aos.services.runs import persist_run
from aos.services.tenancy import TenantContext
from aos.skills.base import Skill
from aos.skills.registry import default_registry

# a cancelled run stopped for a reason outside its plan: a replay could never reproduce it
RECORDABLE_STATUSES = ("succeeded", "failed", "dead_lettered")


def keyring(ctx: TenantContext) -> KeyRing:
    """The tenant's golden keys: derived from the deployment's for this tenant only (aos.golden.sign)."""
    settings = get_settings()
    return KeyRing.from_settings(settings).for_tenant(
        str(ctx.tenant_id), accept_deployment_keys=settings.golden_accept_deployment_keys)


def _skill_info(ref: str) -> tuple[str, bool]:
    try:
        skill = default_registry().resolve(ref)
    except AosError:
        return ref, False  # a skill this process does not know: keep its responses, like any external call
    return skill.ref, skill.deterministic


def _run_of(s: Session, ctx: TenantContext, run_id: uuid.UUID | str) -> Run:
    try:
        rid = uuid.UUID(str(run_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no run {run_id!r}") from None
    run = s.scalar(select(Run).where(Run.id == rid, Run.tenant_id == ctx.tenant_id))
    if run is None:  # another tenant's run is a 404 too
        raise AosError("NOT_FOUND", f"no run {run_id!r}")
    return run


def _skill_or_none(ref: str) -> Skill | None:
    try:
        return default_registry().resolve(ref)
    except AosError:
        return None


def _redacted_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan with each step's (and fallback's) args redacted for its skill: a golden file keeps no secret
    a plan holds literally. A replay runs this plan; the calls that used the secrets are answered from the
    recording, and the args it resolves redact to the same values, so the hashes still match."""
    steps = []
    for step in plan.get("steps") or []:
        if not isinstance(step, dict):
            steps.append(step)
            continue
        step = dict(step)
        step["args"] = redact_args(_skill_or_none(str(step.get("skill"))), step.get("args"))
        on_error = step.get("on_error")
        if isinstance(on_error, dict) and isinstance(on_error.get("fallback"), dict):
            fallback = dict(on_error["fallback"])
            fallback["args"] = redact_args(_skill_or_none(str(fallback.get("skill"))), fallback.get("args"))
            step["on_error"] = {**on_error, "fallback": fallback}
        steps.append(step)
    return {**redact_value({k: v for k, v in plan.items() if k != "steps"}), "steps": steps}


def recording_body(s: Session, run: Run) -> dict[str, Any]:
    """The golden body of a run: its pinned plan, inputs and every attempt of every step, secrets redacted
    (aos.redaction: credential headers and keys, URL user-info, secret query values, what a skill
    declares secret)."""
    rows = s.execute(select(Checkpoint.step_index, Checkpoint.attempt, Checkpoint.status, Checkpoint.skill,
                            Checkpoint.args, Checkpoint.outcome, Checkpoint.raw, Checkpoint.fallback_from)
                     .where(Checkpoint.run_id == run.id)
                     .order_by(Checkpoint.step_index, Checkpoint.attempt)).all()
    plan_steps = run.plan.get("steps") or []
    attempts = []
    for r in rows:
        primary, fallback_from = _skill_or_none(r.skill), r.fallback_from
        if fallback_from is None:
            args = redact_args(primary, r.args)
        else:  # the fallback answered: the row's args are the fallback's, the primary call's are kept beside
            spec = ((plan_steps[r.step_index].get("on_error") or {}).get("fallback") or {}) \
                if r.step_index < len(plan_steps) else {}
            args = redact_args(_skill_or_none(str(spec.get("skill"))), r.args)
            fallback_from = {**fallback_from, "args": redact_args(primary, fallback_from.get("args"))}
        attempts.append(AttemptFacts(step_index=r.step_index, attempt=r.attempt, status=r.status, skill=r.skill,
                                     args=args, outcome=r.outcome, raw=r.raw, fallback_from=fallback_from))
    changed = tuple(amendment(a.step_index, a.step_id, a.after_attempt, dict(a.changes), a.step_hash_before,
                              a.step_hash_after) for a in amendments_of(s, run))
    facts = RunFacts(id=str(run.id), identity=str(run.replay_of or run.id), name=run.name, status=run.status,
                     error_code=run.error_code, plan=_redacted_plan(run.plan), plan_hash=run.plan_hash,
                     inputs=redact_value(run.inputs), skill_versions=run.skill_versions, amendments=changed)
    return build_body(facts, attempts, _skill_info)


def record_run(ctx: TenantContext, run_id: uuid.UUID | str) -> dict[str, Any]:
    """The signed golden document of a finished run.

    The checks come in the order a caller can act on them: the run (404 for a bad id, an unknown
    run or another tenant's), then the server's configuration (503 GOLDEN_SECRET_MISSING names the
    variable to set), then the run's state (409)."""
    with session_scope() as s:
        run = _run_of(s, ctx, run_id)
        keys = keyring(ctx)
        keys.signing_secret()  # before the checkpoints are read: nothing can be signed without it
        if run.status not in RECORDABLE_STATUSES:
            raise AosError("CONFLICT", f"run is {run.status}; only a finished run (succeeded, failed or "
                           "dead-lettered, not cancelled) can be recorded")
        body = recording_body(s, run)
    return seal(body, keys)


def verify(ctx: TenantContext, document: Any, data: bytes | None = None) -> Verified:
    """Signature (with this tenant's keys: another tenant's file does not verify), step hashes, body hash (and,
    given the file's bytes, their canonical form)."""
    return verify_document(document, keyring(ctx), data=data)


def _recorded_calls(body: dict[str, Any]) -> list[tuple[str, int, str, dict[str, Any]]]:
    calls = []
    for step in body["steps"]:
        for attempt in step["attempts"]:
            for role, call in (("primary", attempt["call"]), ("fallback", attempt["fallback"])):
                if call is not None and "raw" in call:  # the calls of non-deterministic skills
                    calls.append((step["id"], attempt["attempt"], role, call))
    return calls


def start_replay(ctx: TenantContext, document: Any, publisher: Publisher | None, *,
                 plan: dict[str, Any] | None = None) -> uuid.UUID:
    """Verify ``document`` and submit its replay run (or ``plan``'s, against the same recording). The replay runs
    the plan as submitted: a recording's amendments are undone here and re-enacted where they came
    (``aos.services.replay_amendments``); ``plan`` stands for the plan as submitted."""
    verify(ctx, document)
    body = document["body"]
    as_recorded = plan is None
    parsed = parse_plan(submitted_plan(body) if as_recorded else plan, default_registry(), inputs=body["inputs"])
    source = body["source"]
    try:
        identity = uuid.UUID(str(source.get("identity") or source.get("run_id")))
    except ValueError:
        raise AosError("GOLDEN_FORMAT_INVALID", "$.body.source.run_id is not a run id") from None
    recorded_versions = body["skill_versions"]
    with session_scope() as s:
        run_id, outbox_ids = persist_run(s, ctx, parsed, replay_of=str(identity), golden_hash=document["hash"])
        run = s.get(Run, run_id)
        assert run is not None
        if as_recorded:
            check_plan_hash(body, run.plan_hash)  # raising rolls the run back: nothing is published
        run.replay_of = identity
        # replay with the skill versions the recording ran, where this AOS still has them
        pinned = dict(run.skill_versions)
        for step in parsed.steps:
            ref = recorded_versions.get(step.id)
            if isinstance(ref, str) and ref.split("@")[0] == step.skill.split("@")[0] \
                    and default_registry().has(ref):
                pinned[step.id] = default_registry().resolve(ref).ref
        run.skill_versions = pinned
        s.add_all(GoldenReplayCall(run_id=run_id, step_id=step_id, attempt=attempt, role=role,
                                   tenant_id=ctx.tenant_id, call=call)
                  for step_id, attempt, role, call in _recorded_calls(body))
        s.add_all(GoldenReplayCall(run_id=run_id, step_id=step_id, attempt=after, role=AMENDMENT_ROLE,
                                   tenant_id=ctx.tenant_id, call=call)
                  for step_id, after, call in recorded_rows(body))
    if publisher is not None:
        for outbox_id in outbox_ids:
            outbox.deliver_one(outbox_id, publisher)
    return run_id


def wait_for_replay(ctx: TenantContext, run_id: uuid.UUID, timeout_s: float | None = None) -> str:
    """Wait until the replay run is final; its status."""
    timeout = get_settings().golden_replay_timeout_s if timeout_s is None else timeout_s
    status, final = poll_replay(ctx, run_id, timeout)
    if not final:
        raise AosError("GOLDEN_REPLAY_TIMEOUT", f"replay run {run_id} is still {status} after {timeout:.0f}s "
                       "(AOS_GOLDEN_REPLAY_TIMEOUT_S); are workers running?", details={"run_id": str(run_id)})
    return status


def poll_replay(ctx: TenantContext, run_id: uuid.UUID, wait_s: float) -> tuple[str, bool]:
    """The replay run's status once it is final, or after ``wait_s`` (whatever it is then), and whether it is."""
    deadline = time.monotonic() + wait_s
    pause = 0.02
    while True:
        with session_scope() as s:
            run = s.scalar(select(Run).where(Run.id == run_id, Run.tenant_id == ctx.tenant_id))
            if run is None:
                raise AosError("NOT_FOUND", f"no run {run_id}")
            status, final = run.status, _final(s, run)
        if final or time.monotonic() > deadline:
            return status, final
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


def _final(s: Session, run: Run) -> bool:
    """Final, and not a replay run stopped where its recording was amended (its amendment is re-enacted next)."""
    return run.status in FINAL_RUN_STATUSES and not awaiting_amendment(s, run)


def _check_replay_of(s: Session, run: Run, document: dict[str, Any]) -> None:
    """``run`` is a replay of ``document`` (its run.queued event names the document's hash), or CONFLICT."""
    queued = s.scalar(select(RunEvent.data).where(RunEvent.run_id == run.id, RunEvent.type == "run.queued")
                      .order_by(RunEvent.id).limit(1))
    if run.replay_of is None or (queued or {}).get("golden_hash") != document.get("hash"):
        raise AosError("CONFLICT", f"run {run.id} is not a replay of this document; replay it with "
                       "POST /api/v1/golden/replay")


def replay_report(ctx: TenantContext, document: dict[str, Any], run_id: uuid.UUID | str) -> dict[str, Any]:
    """Compare a finished replay run with the recording, step by step."""
    with session_scope() as s:
        run = _run_of(s, ctx, run_id)
        _check_replay_of(s, run, document)
        if not _final(s, run):
            raise AosError("CONFLICT", f"replay run {run.id} is still {run.status}")
        replayed = recording_body(s, run)
        status = run.status
    steps, divergence = compare_steps(document["body"]["steps"], replayed["steps"])
    return {
        "run_id": str(run_id), "status": status, "document_hash": document["hash"],
        "source_run_id": document["body"]["source"].get("run_id"),
        "identical": divergence is None, "steps": steps,
        "divergence": divergence.to_dict() if divergence else None,
    }


def replay(ctx: TenantContext, document: Any, publisher: Publisher | None, *, plan: dict[str, Any] | None = None,
           timeout_s: float | None = None) -> dict[str, Any]:
    """Replay ``document`` through the real engine and report, hash by hash, whether it matched."""
    run_id = start_replay(ctx, document, publisher, plan=plan)
    wait_for_replay(ctx, run_id, timeout_s)
    return replay_report(ctx, document, run_id)


def replay_or_pending(ctx: TenantContext, document: Any, publisher: Publisher | None, *,
                      plan: dict[str, Any] | None = None, wait_s: float) -> tuple[bool, dict[str, Any]]:
    """Start the replay, wait at most ``wait_s`` for it: (True, the report) when it is final by then, else
    (False, where it stands); ``report`` gives the comparison later."""
    run_id = start_replay(ctx, document, publisher, plan=plan)
    status, final = poll_replay(ctx, run_id, wait_s)
    if final:
        return True, replay_report(ctx, document, run_id)
    return False, pending_view(run_id, status)


def pending_view(run_id: uuid.UUID | str, status: str) -> dict[str, Any]:
    return {"run_id": str(run_id), "status": status, "report": f"/api/v1/golden/replay/{run_id}/report",
            "run": f"/api/v1/runs/{run_id}"}


def report(ctx: TenantContext, document: Any, run_id: uuid.UUID | str) -> tuple[bool, dict[str, Any]]:
    """The comparison of a replay run started earlier: (True, the report) once it is final, else (False, where it
    stands). The document is verified again: the report is only as good as the recording it compares with."""
    with session_scope() as s:  # the run first (404 for another tenant's), then the document
        run = _run_of(s, ctx, run_id)
        verify(ctx, document)
        _check_replay_of(s, run, document)
        status, final = run.status, _final(s, run)
    if not final:
        return False, pending_view(run_id, status)
    return True, replay_report(ctx, document, run_id)
