"""A run's enqueue: the one owner of what it takes to put a run's steps on the broker.

- the ``run.enqueue`` outbox row (written in the transaction of the state change that queues
  the run: submission, resume, the reaper, a dead letter's replay);
- each step's soft timeout, which the step messages carry;
- the run's plan as workers see it (``run_plan``): loaded once per process and run, because a
  run's plan, inputs and pinned skills change only when a person amends a step of a failed run
  (``aos.services.amendments``), which bumps the run's ``plan_revision``. Per step, the worker then
  needs nothing of the plan from Postgres, whatever the plan's size: the step's claim is fenced by
  the revision, and a claim refused for a stale one reloads the plan.

Services that queue a run import this module; of the other services it imports only the timeline and
the concurrency limits.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from aos.db import direct, step_store
from aos.db.models import ENQUEUE_TOPIC, FINAL_RUN_STATUSES, OutboxMessage, Run, RunWait
from aos.db.scope import OPERATOR
from aos.errors import AosError
from aos.plan import Plan
from aos.plan.refs import iter_references, leading_fields
from aos.plan.stored import stored_plan
from aos.runtime.budget import Limits
from aos.services import concurrency, timeline
from aos.services.publisher import Publisher
from aos.skills.base import Skill, declared_pure
from aos.skills.registry import default_registry

ENQUEUE = ENQUEUE_TOPIC


def step_timeouts(plan: Plan) -> list[float]:
    """Each step's soft timeout: the plan's, else its skill's default."""
    registry = default_registry()
    return [s.timeout_s or registry.resolve(s.skill).default_timeout_s for s in plan.steps]


def enqueue_payload(run_id: uuid.UUID | str, from_step: int) -> dict[str, Any]:
    return {"run_id": str(run_id), "from_step": from_step}


def add_enqueue(s: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, from_step: int,
                due: datetime | None = None) -> int:
    """Add a ``run.enqueue`` row to the session's transaction; its id (the enqueue's generation). With ``due``
    the outbox publishes it no earlier (the drain claims only due rows)."""
    row = OutboxMessage(tenant_id=tenant_id, topic=ENQUEUE, payload=enqueue_payload(run_id, from_step),
                        **({"next_attempt_at": due} if due is not None else {}))
    s.add(row)
    s.flush()
    return row.id


def referenced_steps(args: Any) -> frozenset[str]:
    """The steps whose outputs ``args`` reference (``steps.<id>…``)."""
    wanted = set()
    for ref in iter_references(args, "args"):
        fields = leading_fields(ref.expr)
        if len(fields) > 1 and fields[0] == "steps":
            wanted.add(fields[1])
    return frozenset(wanted)


def publish_segment(run_id: str, from_step: int, generation: int, publisher: Publisher) -> None:
    """Publish the next segment of a long run's chain (called by the chain itself)."""
    rid = uuid.UUID(run_id)
    with direct.relaxed(OPERATOR) as conn:  # the engine's own lookup by run id: its tenant is not known yet
        state = step_store.run_status(conn, rid)
    rp = run_plan(rid, revision=state[1]) if state is not None and state[0] not in FINAL_RUN_STATUSES else None
    if rp is not None:
        publisher.enqueue_run(run_id, from_step, list(rp.timeouts), generation=generation)


def requeue(s: Session, run: Run, *, reason: str, fresh_retries: bool = False,
            not_before: datetime | None = None) -> list[int]:
    """Put a run back in the queue from its first unfinished step (resume, a dead letter's replay, the
    reaper, an applied recovery suggestion); the ids of the ``run.enqueue`` outbox rows to deliver after the
    commit.

    With ``not_before`` (a suggestion's ``delay_s``) the step waits as a retry waits: the run's ``wake_at``
    says when (the run's view shows the step ``retrying`` until then) and its enqueue row is due then, so the
    outbox publishes it no earlier — however long the delay, no message waits in a worker meanwhile (unlike a
    Celery countdown, capped at AOS_MAX_COUNTDOWN_S), and the reaper leaves a run with a pending enqueue alone.
    A run that waits for a concurrency slot is admitted with its enqueue due then too
    (``concurrency.admit``).

    With ``fresh_retries`` (a person stepped in: resume, dead-letter replay) the step's retry budget starts
    over; its attempts keep their numbers (idempotency keys, recordings). A finished run that a concurrency
    limit applies to gave its slot back when it finished: it waits for one again, behind the runs already
    waiting (none of the ids may be its own). A run the reaper re-publishes still holds its slot."""
    wait = run.concurrency is not None and run.status in FINAL_RUN_STATUSES
    now = datetime.now(UTC)
    res = s.execute(update(Run).where(Run.id == run.id, Run.version == run.version)
                    .values(status="queued", cancel_requested=False, version=Run.version + 1,
                            error_code=None, error_message=None, finished_at=None, lease_owner=None,
                            lease_expires_at=None, wake_at=not_before, updated_at=now,
                            waiting_since=now if wait else None,
                            **({"retry_base": Run.attempt} if fresh_retries else {})))
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise AosError("CONFLICT", "the run changed meanwhile; try again")
    # a waiting run that is resumed leaves its wait: its step runs again (a waiting skill waits anew)
    s.execute(update(RunWait).where(RunWait.run_id == run.id, RunWait.status == "waiting")
              .values(status="cancelled", resolved_at=now))
    timeline.record(s, run.tenant_id, run.id, "run.resumed", from_step=run.next_step, reason=reason,
                    **({"resumes_at": not_before.isoformat()} if not_before is not None else {}))
    if wait:
        return list(concurrency.admit(step_store.session_connection(s), run.tenant_id).values())
    return [add_enqueue(s, run.tenant_id, run.id, run.next_step, due=not_before)]


# --- the run's plan, as workers see it -------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """What a worker needs of a run, parsed once per process (and again after a person amends a step)."""

    run_id: uuid.UUID
    revision: int                     # runs.plan_revision this was read at: the claims' fence
    tenant_id: uuid.UUID
    agent_id: uuid.UUID | None
    replay_of: uuid.UUID | None  # a golden replay: the recorded run it re-executes
    plan: Plan
    skills: tuple[Skill | None, ...]  # the pinned skill of each step (None: this process does not have it)
    timeouts: tuple[float, ...]       # each step's soft timeout
    limits: Limits
    missing: dict[int, str]           # why a step's pinned skill could not be loaded here (a deploy removed it)
    refs: tuple[frozenset[str], ...]  # the earlier steps whose outputs each step's args reference
    limited: bool = False             # a concurrency limit applies: finishing it gives its slot to a waiting run
    # which steps may run without a claim (``aos.services.execution``): a pure skill, free, no fallback, in a
    # run with no limits, no concurrency limit and no agent, neither its first step (the run's start) nor its
    # last (the totals)
    claimless: tuple[bool, ...] = ()

    @property
    def inputs(self) -> dict[str, Any]:
        return self.plan.inputs

    @property
    def step_count(self) -> int:
        return len(self.plan.steps)


_CACHE_SIZE = 512
_cache: OrderedDict[uuid.UUID, RunPlan] = OrderedDict()
_cache_lock = threading.Lock()


def run_plan(run_id: uuid.UUID, revision: int | None = None) -> RunPlan | None:
    """The run's plan (None: no such run), from this process's cache or, once, from Postgres. A caller that
    read the run's ``plan_revision`` passes it: a cached plan older than that is read again."""
    with _cache_lock:
        hit = _cache.get(run_id)
        if hit is not None and (revision is None or hit.revision >= revision):
            _cache.move_to_end(run_id)
            return hit
    with direct.relaxed(OPERATOR) as conn:  # a worker learns the run's tenant from this row
        row = step_store.run_plan(conn, run_id)
    if row is None:
        return None
    loaded = _build(run_id, row)
    with _cache_lock:
        _cache[run_id] = loaded
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def forget(run_id: uuid.UUID) -> None:
    """Drop a finished run from this process's cache."""
    with _cache_lock:
        _cache.pop(run_id, None)


def _build(run_id: uuid.UUID, row: dict[str, Any]) -> RunPlan:
    plan = stored_plan(row["plan"], row["inputs"], row["skill_versions"])
    registry = default_registry()
    skills: list[Skill | None] = []
    missing: dict[int, str] = {}
    for st in plan.steps:
        try:
            skills.append(registry.resolve(st.skill))
        except AosError as exc:
            skills.append(None)
            missing[st.index] = exc.message
    max_cost = row["max_cost_usd"]
    limits = Limits(max_cost_usd=Decimal(max_cost) if max_cost is not None else None,
                    max_tokens=row["max_tokens"], max_steps=row["max_steps"], max_wall_s=row["max_wall_s"])
    unlimited = not limits.counted and limits.max_wall_s is None and row["agent_id"] is None \
        and not row.get("limited")
    claimless = tuple(unlimited and 0 < st.index < len(plan.steps) - 1 and k is not None and declared_pure(k)
                      and st.on_error.mode not in ("FALLBACK", "ESCALATE") and not k.cost_model.estimate(st.args).cost_usd
                      and not k.cost_model.estimate(st.args).tokens
                      for st, k in zip(plan.steps, skills, strict=True))
    return RunPlan(
        run_id=run_id, revision=row["plan_revision"], tenant_id=row["tenant_id"], agent_id=row["agent_id"], replay_of=row["replay_of"],
        plan=plan, skills=tuple(skills), missing=missing, refs=tuple(referenced_steps(st.args) for st in plan.steps),
        timeouts=tuple(st.timeout_s or (k.default_timeout_s if k else Skill.default_timeout_s)
                       for st, k in zip(plan.steps, skills, strict=True)),
        limits=limits, claimless=claimless, limited=bool(row.get("limited")))
