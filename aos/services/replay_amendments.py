"""A golden replay of an amended run re-enacts the amendments where the recording says they came.

The recorded run ran its step as submitted, failed there after ``after_attempt`` attempts, and a person amended
the step and resumed the run (``aos.services.recovery.apply_suggestion``). Its replay does the same:

- it is submitted with the plan *as submitted*: the recorded (amended) plan with each amendment's ``changes``
  undone, newest first, checked against the amendments' step hashes and the recorded ``plan_hash``
  (``submitted_plan``); a document whose amendments do not undo to it is ``GOLDEN_FORMAT_INVALID``;
- the amendments are stored with the replay run as it starts (``golden_replay_calls``, role ``amendment``,
  keyed by the step and the attempt they came after: ``recorded_rows``);
- when the replay run fails at that step after that many attempts, the step task (after the failure is
  committed, like recovery's lookup) calls ``after_run_failed``: the amendment is made through the same
  ``amend_step`` (validation, ``plan_revision``, the audit row, ``applied_by`` "replay") and the run resumed
  with a fresh retry budget, as the person's apply did, in one transaction (``resume_as_recorded``);
- until then such a failed replay run is not final (``awaiting_amendment``): a waiter goes on waiting;
- a worker that dies between committing the failure and re-enacting leaves the run failed with its amendment
  due: the reaper re-enacts it once the failure is older than its grace (``reenact_stranded``).

A run is amended from outside the engine, by a person after its failure; the replay's amendment is made from
the same place, after the failure, so the step path (claim, call, settle) knows nothing of it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from aos.db.models import GoldenReplayCall, Run
from aos.db.scope import as_tenant
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan.model import canonical_json, plan_hash
from aos.redaction import MASK
from aos.services import enqueue
from aos.services.amendments import AMENDABLE_STATUSES, amend_step, parameters_of, undone
from aos.services.publisher import Publisher
from aos.services.runs import deliver_admitted
from aos.services.tenancy import TenantContext

log = logging.getLogger(__name__)

ROLE = "amendment"
APPLIED_BY = "replay"


def submitted_plan(body: dict[str, Any]) -> dict[str, Any]:
    """The plan the recorded run was submitted with: its amended plan with the amendments undone, newest first.
    Where a reading is ambiguous (``amendments.undone``) the step hashes decide. Checked against the steps'
    hashes and ``plan_hash`` unless the plan holds redacted values (the hashes cover the secrets the file does
    not keep): then the likeliest reading stands and the replay's comparison says the rest."""
    plan = body["plan"]
    recorded = body.get("amendments") or []
    if not recorded:
        return plan
    checkable = MASK not in canonical_json(plan)
    steps = list(plan.get("steps") or [])
    for n in reversed(range(len(recorded))):
        a, where = recorded[n], f"$.body.amendments[{n}]"
        index = a["step_index"]
        if not 0 <= index < len(steps) or steps[index].get("id") != a["step_id"]:
            raise _invalid(f"{where} names step {a['step_id']!r} at {index}, which the plan does not have there")
        if checkable and plan_hash(steps[index]) != a["step_hash_after"]:
            raise _invalid(f"{where}.step_hash_after is not the hash of step {a['step_id']!r} as amended")
        candidates = undone(steps[index], a["changes"])
        matching = [c for c in candidates if plan_hash(c) == a["step_hash_before"]] if checkable else candidates
        if not matching:
            raise _invalid(f"{where}.changes do not undo to the step it amended (step_hash_before)")
        steps[index] = matching[0]
    submitted = {**plan, "steps": steps}
    return submitted


def check_plan_hash(body: dict[str, Any], submitted_hash: str) -> None:
    """The replay run's plan (as it hashed it at submission) is the recorded run's: GOLDEN_FORMAT_INVALID if not."""
    if body.get("amendments") and submitted_hash != body["plan_hash"] and MASK not in canonical_json(body["plan"]):
        raise _invalid("$.body.amendments do not undo the plan to the one submitted ($.body.plan_hash)")


def _invalid(message: str) -> AosError:
    return AosError("GOLDEN_FORMAT_INVALID", f"{message}: the recording cannot be replayed as it ran; nothing "
                    "was started")


def recorded_rows(body: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(step id, the attempt they came after, {"amendments": [...]}) for each place the recording was amended;
    each amendment carries its ``order`` (1 = the first), which the replay run's ``plan_revision`` counts."""
    places: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for order, a in enumerate(body.get("amendments") or [], start=1):
        places.setdefault((a["step_id"], a["after_attempt"]), []).append({**a, "order": order})
    return [(step_id, after, {"amendments": amended}) for (step_id, after), amended in places.items()]


def _due(s: Session, run: Run) -> dict[str, Any] | None:
    """The recorded amendment to make now: the replay run failed at the step and attempt where the recording's next
    amendment came (its ``plan_revision`` counts those already made)."""
    if run.replay_of is None or run.status not in AMENDABLE_STATUSES or run.next_step >= run.step_count:
        return None
    step_id = str(run.plan["steps"][run.next_step].get("id"))
    call = s.scalar(select(GoldenReplayCall.call).where(
        GoldenReplayCall.run_id == run.id, GoldenReplayCall.step_id == step_id,
        GoldenReplayCall.attempt == run.attempt, GoldenReplayCall.role == ROLE))
    return next((a for a in (call or {}).get("amendments", [])
                 if a.get("order") == run.plan_revision + 1 and "refused" not in a), None)


def awaiting_amendment(s: Session, run: Run) -> bool:
    """A failed replay run that stopped where its recording was amended: not final, its amendment comes next."""
    return _due(s, run) is not None


def resume_as_recorded(run_id: uuid.UUID, publisher: Publisher | None) -> bool:
    """Make the recorded amendment due on this replay run and resume it with a fresh retry budget; whether it
    did. Idempotent: the run is locked, and once resumed nothing is due. An amendment this replay's plan refuses
    (a replay of another plan) is marked ``refused`` with the reason: the failure then stands, final."""
    with session_scope() as s:
        run = s.scalar(select(Run).where(Run.id == run_id).with_for_update())
        due = _due(s, run) if run is not None else None
        if run is None or due is None:
            return False
        ctx = TenantContext(tenant_id=run.tenant_id, tenant_name="", key_id=None,
                            scopes=frozenset({"runs:read", "runs:write"}))
        try:  # validation comes before any write: a refusal leaves the session clean
            made = amend_step(s, ctx, run, parameters_of(due["changes"]), suggestion_id=None, applied_by=APPLIED_BY)
        except AosError as exc:
            _refuse(s, run, due, exc.message)
            return False
        if made is None:
            _refuse(s, run, due, "it changes nothing of this replay's plan")
            return False
        outbox_ids = enqueue.requeue(s, run, reason=APPLIED_BY, fresh_retries=True)
    deliver_admitted(outbox_ids, publisher)
    return True


def _refuse(s: Session, run: Run, due: dict[str, Any], why: str) -> None:
    log.warning("replay run %s: the recorded amendment of step %s was not re-enacted: %s", run.id, due["step_id"], why)
    row = s.get(GoldenReplayCall, (run.id, due["step_id"], run.attempt, ROLE))
    assert row is not None
    row.call = {"amendments": [{**a, "refused": why} if a.get("order") == due["order"] else a
                               for a in row.call["amendments"]]}


def after_run_failed(run_id: str, publisher: Publisher | None) -> bool:
    """The step task's call once a run's failure is committed: a golden replay run resumes where its recording was
    amended; whether it did. No query for a run that is no replay (its plan is cached); never raises."""
    try:
        rp = enqueue.run_plan(uuid.UUID(run_id))
        if rp is None or rp.replay_of is None:
            return False
        with as_tenant(rp.tenant_id):
            return resume_as_recorded(rp.run_id, publisher)
    except Exception:  # noqa: BLE001 — the failure is committed; a waiter sees the run awaiting its amendment
        log.exception("replay run %s: re-enacting the recorded amendment raised", run_id)
    return False


# Failed replay runs whose next recorded amendment is due (as ``_due`` says, in SQL): found through the partial
# index of the amendment rows, which only replays of amended recordings have.
_STRANDED = text("""
SELECT r.id FROM golden_replay_calls c
JOIN runs r ON r.id = c.run_id AND c.step_id = r.plan->'steps'->r.next_step->>'id' AND c.attempt = r.attempt
WHERE c.role = 'amendment' AND r.replay_of IS NOT NULL AND r.status IN ('failed', 'dead_lettered')
  AND r.finished_at < now() - make_interval(secs => :grace)
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(c.call->'amendments') a
              WHERE (a->>'order')::int = r.plan_revision + 1 AND NOT a ? 'refused')
ORDER BY r.finished_at LIMIT :n
""")


def reenact_stranded(grace_s: float, publisher: Publisher | None, limit: int = 100) -> int:
    """Re-enact the due amendment of replay runs that failed more than ``grace_s`` ago and were left there (the
    worker died between the failure and ``after_run_failed``); how many were resumed. The reaper's job: it runs
    in the operator's scope, as beat's jobs do."""
    with session_scope() as s:
        stranded = list(s.scalars(_STRANDED, {"grace": grace_s, "n": limit}))
    resumed = 0
    for run_id in stranded:
        log.warning("replay run %s: failed where its recording was amended, and was left there; re-enacting", run_id)
        resumed += resume_as_recorded(run_id, publisher)
    return resumed
