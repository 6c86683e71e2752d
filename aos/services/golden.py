"""Golden files as use cases: record a run, verify a document, replay it through the real engine.

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
from aos.db.models import FINAL_RUN_STATUSES, Checkpoint, GoldenReplayCall, Run
from aos.db.session import session_scope
from aos.errors import AosError
from aos.golden.diff import compare_steps
from aos.golden.record import AttemptFacts, RunFacts, build_body, seal
from aos.golden.sign import KeyRing
from aos.golden.verify import Verified, verify_document
from aos.plan import parse_plan
from aos.services import outbox
from aos.services.publisher import Publisher
from aos.services.runs import persist_run
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry

# a cancelled run stopped for a reason outside its plan: a replay could never reproduce it
RECORDABLE_STATUSES = ("succeeded", "failed", "dead_lettered")


def keyring() -> KeyRing:
    return KeyRing.from_settings(get_settings())


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


def recording_body(s: Session, run: Run) -> dict[str, Any]:
    """The golden body of a run: its pinned plan, inputs and every attempt of every step."""
    rows = s.execute(select(Checkpoint.step_index, Checkpoint.attempt, Checkpoint.status, Checkpoint.skill,
                            Checkpoint.args, Checkpoint.outcome, Checkpoint.raw, Checkpoint.fallback_from)
                     .where(Checkpoint.run_id == run.id)
                     .order_by(Checkpoint.step_index, Checkpoint.attempt)).all()
    attempts = [AttemptFacts(step_index=r.step_index, attempt=r.attempt, status=r.status, skill=r.skill,
                             args=r.args, outcome=r.outcome, raw=r.raw, fallback_from=r.fallback_from)
                for r in rows]
    facts = RunFacts(id=str(run.id), identity=str(run.replay_of or run.id), name=run.name, status=run.status,
                     error_code=run.error_code, plan=run.plan, plan_hash=run.plan_hash, inputs=run.inputs,
                     skill_versions=run.skill_versions)
    return build_body(facts, attempts, _skill_info)


def record_run(ctx: TenantContext, run_id: uuid.UUID | str) -> dict[str, Any]:
    """The signed golden document of a finished run."""
    keys = keyring()
    keys.signing_secret()  # fail before reading anything when nothing can be signed
    with session_scope() as s:
        run = _run_of(s, ctx, run_id)
        if run.status not in RECORDABLE_STATUSES:
            raise AosError("CONFLICT", f"run is {run.status}; only a finished run (succeeded, failed or "
                           "dead-lettered, not cancelled) can be recorded")
        body = recording_body(s, run)
    return seal(body, keys)


def verify(document: Any, data: bytes | None = None) -> Verified:
    """Signature, step hashes, body hash (and, given the file's bytes, their canonical form)."""
    return verify_document(document, keyring(), data=data)


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
    """Verify ``document`` and submit its replay run (or ``plan``'s, against the same recording)."""
    verify(document)
    body = document["body"]
    parsed = parse_plan(body["plan"] if plan is None else plan, default_registry(), inputs=body["inputs"])
    source = body["source"]
    try:
        identity = uuid.UUID(str(source.get("identity") or source.get("run_id")))
    except ValueError:
        raise AosError("GOLDEN_FORMAT_INVALID", "$.body.source.run_id is not a run id") from None
    recorded_versions = body["skill_versions"]
    with session_scope() as s:
        run_id, outbox_id = persist_run(s, ctx, parsed, replay_of=str(identity), golden_hash=document["hash"])
        run = s.get(Run, run_id)
        assert run is not None
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
    if publisher is not None:
        outbox.deliver_one(outbox_id, publisher)
    return run_id


def wait_for_replay(ctx: TenantContext, run_id: uuid.UUID, timeout_s: float | None = None) -> str:
    """Wait until the replay run is final; its status."""
    timeout = get_settings().golden_replay_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        with session_scope() as s:
            status = s.scalar(select(Run.status).where(Run.id == run_id, Run.tenant_id == ctx.tenant_id))
        if status is None:
            raise AosError("NOT_FOUND", f"no run {run_id}")
        if status in FINAL_RUN_STATUSES:
            return status
        if time.monotonic() > deadline:
            raise AosError("GOLDEN_REPLAY_TIMEOUT", f"replay run {run_id} is still {status} after {timeout:.0f}s "
                           "(AOS_GOLDEN_REPLAY_TIMEOUT_S); are workers running?", details={"run_id": str(run_id)})
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


def replay_report(ctx: TenantContext, document: dict[str, Any], run_id: uuid.UUID | str) -> dict[str, Any]:
    """Compare a finished replay run with the recording, step by step."""
    with session_scope() as s:
        run = _run_of(s, ctx, run_id)
        if run.status not in FINAL_RUN_STATUSES:
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
