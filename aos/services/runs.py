"""Run use cases: submit, read (runs, pages of runs, steps and outputs, timeline, live events), cancel, resume."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aos import metrics
from aos.config import get_settings
from aos.db import direct, run_store, step_store
from aos.db.jsontext import NotStorable, to_json
from aos.db.models import FINAL_RUN_STATUSES, RUN_STATUSES, Checkpoint, OutboxMessage, Run, Tenant, Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import Plan, parse_plan
from aos.runtime import budget
from aos.services import amendments, concurrency, enqueue, outbox, quotas, signals, timeline
from aos.services.capabilities import capability_problems, load_agent, raise_if_denied
from aos.services.failures import error_view, final_error_view
from aos.services.pagination import DEFAULT_LIMIT, paginate
from aos.services.publisher import Publisher
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)


def submit_run(ctx: TenantContext, plan_data: Any, publisher: Publisher | None, *,
               inputs: dict[str, Any] | None = None, agent_id: uuid.UUID | None = None,
               workflow_id: uuid.UUID | None = None, scope: str | None = None) -> uuid.UUID:
    """Validate, store the run with its enqueue and ``run.queued`` event (one durable statement), then
    publish and settle the enqueue.

    A run that was committed is never lost: if publishing fails (broker down) the enqueue row stays
    pending and the beat-driven drain publishes it later. A run that a concurrency limit applies to is
    stored waiting and starts when a slot is free (``aos.services.concurrency``); ``scope`` names the
    group of its workflow (``workflow:<name>``) for a ``concurrency`` in its plan.
    """
    return _submit(ctx, plan_data, publisher, inputs=inputs, agent_id=agent_id, workflow_id=workflow_id,
                   scope=scope)[0].id


def accept_run(ctx: TenantContext, plan_data: Any, publisher: Publisher | None, *,
               inputs: dict[str, Any] | None = None, agent_id: uuid.UUID | None = None,
               workflow_id: uuid.UUID | None = None) -> dict[str, Any]:
    """``submit_run``, answered with the run as it was accepted (queued, every step pending) — the
    view ``get_run`` gives of a new run, built from what was stored rather than read back."""
    run, plan = _submit(ctx, plan_data, publisher, inputs=inputs, agent_id=agent_id, workflow_id=workflow_id)
    steps = [_step_view(run, i, st, [], None, 0) for i, st in enumerate(run.plan["steps"])]
    return {**run_summary(run), "inputs": run.inputs, "steps": steps, "waiting": None, "amendments": []}


def _submit(ctx: TenantContext, plan_data: Any, publisher: Publisher | None, *, inputs: dict[str, Any] | None,
            agent_id: uuid.UUID | None, workflow_id: uuid.UUID | None,
            scope: str | None = None) -> tuple[Run, Plan]:
    if inputs is not None and not isinstance(inputs, dict):
        raise AosError("VALIDATION_ERROR", "inputs must be a JSON object")
    plan = parse_plan(plan_data, default_registry(), inputs=inputs)
    quotas.check_submission(ctx)  # nothing to read unless the tenant has daily run or token quotas
    agent_caps = None
    if agent_id is not None:
        with session_scope() as s:
            agent_caps = check_capabilities(s, ctx, agent_id, plan)
    check_step_budget(plan)
    limits = concurrency.run_concurrency(
        concurrency.groups_for(plan, scope=scope, agent_id=agent_id, agent_capabilities=agent_caps),
        concurrency.tenant_cap(ctx.max_running_runs))
    run = new_run(ctx, plan, agent_id=agent_id, workflow_id=workflow_id, concurrency=limits)
    if limits is None:
        with direct.durable() as conn:
            row = run_store.insert_run(conn, run, **_enqueue_args(run, plan,
                                                                  lease_s=outbox.lease_seconds() if publisher else 0))
        created_at = row.run_created_at
    else:
        with direct.durable() as conn, conn.transaction():
            created_at = run_store.insert_waiting_run(conn, run, queued=_enqueue_args(run, plan, lease_s=0)["queued"])
            admitted = list(concurrency.admit(conn, ctx.tenant_id).values())
    metrics.run_submitted()  # after the commit (schedules count their firings the same way)
    if publisher is not None:
        if limits is None:
            outbox.publish_leased(ctx.tenant_id, run.id, row, publisher, enqueue.step_timeouts(plan))
        else:
            deliver_admitted(admitted, publisher)
    b = plan.budget
    accepted = Run(id=run.id, tenant_id=ctx.tenant_id, agent_id=agent_id, workflow_id=workflow_id, name=plan.name,
                   plan=plan.raw, plan_hash=run.plan_hash, inputs=plan.inputs, step_count=run.step_count,
                   status="queued", next_step=0, max_cost_usd=run.max_cost_usd, max_tokens=b.max_tokens,
                   max_steps=b.max_steps, max_wall_s=b.max_wall_s, spent_cost_usd=Decimal(0), spent_tokens=0,
                   steps_started=0, created_at=created_at)
    return accepted, plan


def deliver_admitted(outbox_ids: list[int], publisher: Publisher | None) -> None:
    """Publish the enqueues of runs that were just given a slot (the drain does it if this fails)."""
    if publisher is None:
        return
    for oid in outbox_ids:
        try:
            outbox.deliver_one(oid, publisher)
        except Exception:  # noqa: BLE001 — the row stays pending: the drain publishes it
            log.warning("could not publish admitted run (outbox %s); the drain will", oid, exc_info=True)


def new_run(ctx: TenantContext, plan: Plan, *, agent_id: uuid.UUID | None = None,
            workflow_id: uuid.UUID | None = None, concurrency: str | None = None) -> run_store.NewRun:
    """The row of a validated plan's run: plan, inputs and skill versions pinned."""
    try:
        plan_json = to_json(plan.raw, canonical=True)
        inputs_json = to_json(plan.inputs)
    except NotStorable as exc:
        raise AosError("PLAN_INVALID", f"the plan or its inputs cannot be stored as JSON: {exc}",
                       problems=[{"path": "$", "code": "PLAN_INVALID", "message": str(exc)}]) from None
    b = plan.budget
    return run_store.NewRun(
        id=uuid.uuid4(), tenant_id=ctx.tenant_id, name=plan.name, plan=plan_json,
        plan_hash=hashlib.sha256(plan_json.encode()).hexdigest(),
        skill_versions=to_json({st.id: st.skill for st in plan.steps}), inputs=inputs_json,
        step_count=len(plan.steps), agent_id=agent_id, workflow_id=workflow_id,
        max_cost_usd=budget.money(b.max_cost_usd) if b.max_cost_usd is not None else None,
        max_tokens=b.max_tokens, max_steps=b.max_steps, max_wall_s=b.max_wall_s, concurrency=concurrency)


def _enqueue_args(run: run_store.NewRun, plan: Plan, *, lease_s: float, **queued_data: Any) -> dict[str, Any]:
    return {"topic": enqueue.ENQUEUE, "payload": to_json(enqueue.enqueue_payload(run.id, 0)), "lease_s": lease_s,
            "queued": to_json({"steps": len(plan.steps), **queued_data})}


def check_step_budget(plan: Plan) -> None:
    """Refuse a plan that cannot finish inside its own ``max_steps``: every step starts at least once
    (a skipped or fallen-back step included), so more steps than that fail for certain at the first one
    over. Costs and tokens are estimates, judged by the simulator, not refused here."""
    limit = plan.budget.max_steps
    if limit is not None and len(plan.steps) > limit:
        message = (f"the plan has {len(plan.steps)} steps but its budget allows {limit} "
                   f"(every step starts at least once); raise budget.max_steps or shorten the plan")
        raise AosError("BUDGET_EXCEEDED", message,
                       problems=[{"path": "$.budget.max_steps", "code": "BUDGET_EXCEEDED", "message": message}])


def persist_run(s: Session, ctx: TenantContext, plan: Plan, *, agent_id: uuid.UUID | None = None,
                workflow_id: uuid.UUID | None = None, scope: str | None = None,
                **queued_data: Any) -> tuple[uuid.UUID, list[int]]:
    """Insert a validated run, its enqueue outbox row (due at once) and its ``run.queued`` event in the
    caller's transaction (a user schedule advances its next fire time in the same one); return (run id,
    the enqueue outbox ids for ``outbox.deliver_one`` after the commit). A run that a concurrency limit
    applies to is stored waiting: the ids are then those of the runs given a slot (perhaps none)."""
    agent_caps = check_capabilities(s, ctx, agent_id, plan) if agent_id is not None else None
    check_step_budget(plan)
    own_cap = s.scalar(select(Tenant.max_running_runs).where(Tenant.id == ctx.tenant_id))
    limits = concurrency.run_concurrency(
        concurrency.groups_for(plan, scope=scope, agent_id=agent_id, agent_capabilities=agent_caps),
        concurrency.tenant_cap(own_cap))
    run = new_run(ctx, plan, agent_id=agent_id, workflow_id=workflow_id, concurrency=limits)
    conn = step_store.session_connection(s)
    if limits is not None:
        run_store.insert_waiting_run(conn, run, queued=_enqueue_args(run, plan, lease_s=0, **queued_data)["queued"])
        return run.id, list(concurrency.admit(conn, ctx.tenant_id).values())
    row = run_store.insert_run(conn, run, **_enqueue_args(run, plan, lease_s=0, **queued_data))
    return run.id, [row.id]


def check_capabilities(s: Session, ctx: TenantContext, agent_id: uuid.UUID, plan: Plan) -> dict[str, Any]:
    """Submission-time capability check (execution re-checks hosts and connections in the skills); the
    agent's capabilities."""
    agent = load_agent(s, ctx, agent_id)
    raise_if_denied(capability_problems(agent, plan))
    return dict(agent.capabilities or {})


def _get_run(s: Session, tenant_id: uuid.UUID, run_id: uuid.UUID | str) -> Run:
    try:
        rid = uuid.UUID(str(run_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no run {run_id!r}") from None
    run = s.scalar(select(Run).where(Run.id == rid, Run.tenant_id == tenant_id))
    if run is None:  # another tenant's run is a 404 too: never confirm it exists
        raise AosError("NOT_FOUND", f"no run {run_id!r}")
    return run


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id), "name": run.name, "status": run.status, "steps_total": run.step_count,
        "next_step": run.next_step, "agent_id": str(run.agent_id) if run.agent_id else None,
        "workflow_id": str(run.workflow_id) if run.workflow_id else None,
        "error": (final_error_view if run.status in FINAL_RUN_STATUSES else error_view)(
            run.error_code, run.error_message) if run.error_code else None,
        "budget": {
            "max_cost_usd": float(run.max_cost_usd) if run.max_cost_usd is not None else None,
            "max_tokens": run.max_tokens, "max_steps": run.max_steps, "max_wall_s": run.max_wall_s,
            "spent_cost_usd": float(run.spent_cost_usd), "spent_tokens": run.spent_tokens,
            "steps_started": run.steps_started,
        },
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at), "plan_hash": run.plan_hash,
    }


MAX_NAME_FILTER_CHARS = 200


def list_runs(ctx: TenantContext, *, status: str | None = None, agent_id: uuid.UUID | None = None,
              workflow: str | None = None, name: str | None = None, created_after: datetime | None = None,
              created_before: datetime | None = None, limit: int = DEFAULT_LIMIT,
              cursor: str | None = None) -> dict[str, Any]:
    """A page of this tenant's runs, newest first: ``{"items": [RunSummary], "next_cursor"}``.

    ``created_after`` is inclusive and ``created_before`` exclusive; ``workflow`` is a stored
    workflow's name (any of its versions); ``name`` keeps runs whose plan name contains it (any case)."""
    q = select(Run).where(Run.tenant_id == ctx.tenant_id)
    if status:
        if status not in RUN_STATUSES:
            raise AosError("VALIDATION_ERROR", f"status must be one of {', '.join(RUN_STATUSES)}",
                           problems=[{"path": "status", "code": "VALIDATION_ERROR",
                                      "message": f"must be one of {', '.join(RUN_STATUSES)}"}])
        q = q.where(Run.status == status)
    if name:
        if len(name) > MAX_NAME_FILTER_CHARS or "\x00" in name:
            raise AosError("VALIDATION_ERROR", f"a name filter has at most {MAX_NAME_FILTER_CHARS} characters "
                           "and no NUL", problems=[{"path": "name", "code": "VALIDATION_ERROR",
                                                    "message": f"at most {MAX_NAME_FILTER_CHARS} characters, no NUL"}])
        pattern = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Run.name.ilike(f"%{pattern}%", escape="\\"))
    if agent_id is not None:
        q = q.where(Run.agent_id == agent_id)
    if workflow is not None:
        q = q.where(Run.workflow_id.in_(select(Workflow.id).where(Workflow.tenant_id == ctx.tenant_id,
                                                                  Workflow.name == workflow)))
    if created_after is not None:
        q = q.where(Run.created_at >= created_after)
    if created_before is not None:
        q = q.where(Run.created_at < created_before)
    with session_scope() as s:
        return paginate(s, q, created_col=Run.created_at, id_col=Run.id, limit=limit, cursor=cursor,
                        view=run_summary)


def get_run(ctx: TenantContext, run_id: uuid.UUID | str) -> dict[str, Any]:
    """The run with each step's status, attempts, output (or a reference when large), error and timings."""
    large = get_settings().large_output_bytes
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        cps = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id)
                        .order_by(Checkpoint.step_index, Checkpoint.attempt)).all()
        by_step: dict[int, list[Checkpoint]] = {}
        for cp in [*cps, *_open_attempt(run)]:
            by_step.setdefault(cp.step_index, []).append(cp)
        steps = []
        for i, st in enumerate(run.plan["steps"]):
            attempts = by_step.get(i, [])
            last = attempts[-1] if attempts else None
            steps.append(_step_view(run, i, st, attempts, last, large))
        return {**run_summary(run), "inputs": run.inputs, "steps": steps, "waiting": signals.waiting_for(s, run),
                "amendments": [amendments.view(a) for a in amendments.amendments_of(s, run)]}


def _open_attempt(run: Run) -> list[Checkpoint]:
    """The attempt in progress (it lives on the run row until it ends), as an unsaved attempt row."""
    if not run.attempt_open:
        return []
    step = run.plan["steps"][run.next_step]
    return [Checkpoint(tenant_id=run.tenant_id, run_id=run.id, step_index=run.next_step, step_id=step["id"],
                       attempt=run.attempt, deliveries=run.attempt_deliveries, status="running",
                       skill=run.skill_versions.get(step["id"], step["skill"]), worker=run.lease_owner,
                       started_at=run.attempt_started_at, cost_usd=Decimal(0), input_tokens=0, output_tokens=0)]


def _step_view(run: Run, i: int, st: dict[str, Any], attempts: list[Checkpoint], last: Checkpoint | None,
               large: int) -> dict[str, Any]:
    status = last.status if last else ("pending" if run.status not in FINAL_RUN_STATUSES else "not_run")
    next_attempt_at = None
    if status == "failed" and run.status == "running" and i == run.next_step and not run.attempt_open:
        # the failed attempt is not the step's end: the run keeps its place and the step waits for its retry
        status, next_attempt_at = "retrying", run.wake_at
    elif status == "failed" and run.status == "queued" and i == run.next_step and run.wake_at is not None:
        # resumed with a delay (an applied recovery suggestion's delay_s): the step waits as a retry does
        status, next_attempt_at = "retrying", run.wake_at
    if run.status == "waiting" and i == run.next_step:
        status = "waiting"
    output: Any = None
    output_ref = None
    error = None
    if last and last.outcome:
        if last.status in ("succeeded", "skipped"):
            output = last.outcome.get("output")
            size = len(str(output)) if output is not None else 0
            if size > large:
                output, output_ref = None, f"/api/v1/runs/{run.id}/steps/{st['id']}/output"
        err = last.outcome.get("error")
        if err:
            ended = status == "failed" and run.status in FINAL_RUN_STATUSES
            error = (final_error_view if ended else error_view)(err["code"], err.get("message"))
    return {
        "id": st["id"], "index": i, "skill": st["skill"], "status": status, "attempts": len(attempts),
        "output": output, "output_ref": output_ref, "error": error,
        "cost_usd": float(sum((c.cost_usd for c in attempts), 0)),
        "tokens": sum(c.input_tokens + c.output_tokens for c in attempts),
        "started_at": _iso(attempts[0].started_at) if attempts else None,
        "finished_at": _iso(last.finished_at) if last else None,
        "duration_ms": float(last.duration_ms) if last and last.duration_ms is not None else None,
        "next_attempt_at": _iso(next_attempt_at),
    }


# Which process ran a step (host:pid/delivery) describes the deployment, not the tenant's run: operators only
_DEPLOYMENT_FIELDS = ("worker",)


def visible_events(ctx: TenantContext, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` as ``ctx`` may see them: the worker's host and pid only with the ``operator`` scope."""
    if ctx.has("operator"):
        return events
    for e in events:
        data = e.get("data")
        if isinstance(data, dict) and any(f in data for f in _DEPLOYMENT_FIELDS):
            e["data"] = {k: v for k, v in data.items() if k not in _DEPLOYMENT_FIELDS}
    return events


def get_timeline(ctx: TenantContext, run_id: uuid.UUID | str, after_id: int = 0) -> list[dict[str, Any]]:
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        return visible_events(ctx, timeline.events_of(s, run.id, after_id))


def poll_events(ctx: TenantContext, run_id: uuid.UUID | str, after_id: int = 0,
                limit: int = 500) -> tuple[bool, dict[str, Any], list[dict[str, Any]]]:
    """One poll of a run's live stream: (run is final, its summary, events after ``after_id``).

    The status is read *before* the events: the transaction that makes a run final writes its
    final event too, so when the status read says final, the events read after it hold them all.
    """
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        summary = run_summary(run)
        return run.status in FINAL_RUN_STATUSES, summary, visible_events(ctx, timeline.events_of(s, run.id, after_id,
                                                                                                 limit))


def _step_index(run: Run, step_id: str) -> int:
    for i, st in enumerate(run.plan["steps"]):
        if st.get("id") == step_id:
            return i
    raise AosError("STEP_NOT_FOUND", f"run {run.id} has no step {step_id!r}")


def get_step(ctx: TenantContext, run_id: uuid.UUID | str, step_id: str) -> dict[str, Any]:
    """One step of a run with every attempt: args, outcome, cost, tokens, worker and timings."""
    large = get_settings().large_output_bytes
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        i = _step_index(run, step_id)
        attempts = [*s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.step_index == i)
                               .order_by(Checkpoint.attempt)).all(),
                    *(cp for cp in _open_attempt(run) if cp.step_index == i)]
        view = _step_view(run, i, run.plan["steps"][i], list(attempts), attempts[-1] if attempts else None, large)
        view["attempts"] = [_attempt_view(run, step_id, cp, large, ctx.has("operator")) for cp in attempts]
        return view


def _attempt_view(run: Run, step_id: str, cp: Checkpoint, large: int, operator: bool) -> dict[str, Any]:
    outcome = cp.outcome or {}
    output, output_ref = outcome.get("output"), None
    if output is not None and len(str(output)) > large:
        output, output_ref = None, f"/api/v1/runs/{run.id}/steps/{step_id}/output"
    err = outcome.get("error")
    return {
        "attempt": cp.attempt, "status": cp.status, "args": cp.args, "output": output, "output_ref": output_ref,
        "error": error_view(err["code"], err.get("message")) if err else None,
        "cost_usd": float(cp.cost_usd), "input_tokens": cp.input_tokens, "output_tokens": cp.output_tokens,
        "worker": cp.worker if operator else None, "started_at": _iso(cp.started_at), "finished_at": _iso(cp.finished_at),
        "duration_ms": float(cp.duration_ms) if cp.duration_ms is not None else None,
    }


def get_step_output(ctx: TenantContext, run_id: uuid.UUID | str, step_id: str) -> dict[str, Any]:
    """The full output of the step's successful attempt, however large; NOT_FOUND while there is none."""
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        i = _step_index(run, step_id)
        cp = s.scalar(select(Checkpoint).where(Checkpoint.run_id == run.id, Checkpoint.step_index == i,
                                               Checkpoint.status.in_(("succeeded", "skipped"))))
        if cp is None:
            raise AosError("NOT_FOUND", f"step {step_id!r} of run {run.id} has no successful attempt (yet)")
        return {"output": (cp.outcome or {}).get("output")}


def cancel_run(ctx: TenantContext, run_id: uuid.UUID | str, publisher: Publisher | None) -> dict[str, Any]:
    """Cancel: no step starts after this commits (every claim checks the status in the same statement)."""
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        if run.status in FINAL_RUN_STATUSES:
            raise AosError("CONFLICT", f"run is already {run.status}; only queued or running runs can be cancelled")
        res = s.execute(update(Run).where(Run.id == run.id, Run.version == run.version)
                        .values(status="cancelled", cancel_requested=True, version=Run.version + 1,
                                finished_at=datetime.now(UTC), updated_at=datetime.now(UTC), waiting_since=None,
                                error_code="RUN_CANCELLED", error_message="cancelled by request"))
        if res.rowcount == 0:  # type: ignore[attr-defined]
            raise AosError("CONFLICT", "the run changed while cancelling; try again")
        signals.close_waits(s, run.id)
        timeline.record(s, ctx.tenant_id, run.id, "run.cancelled")
        # its slot is free with this commit: the next waiting runs get it in the same transaction
        admitted = list(concurrency.admit(step_store.session_connection(s), ctx.tenant_id).values()) \
            if run.concurrency is not None else []
        metrics.run_finished("cancelled")
        generations = s.scalars(select(OutboxMessage.id).where(
            OutboxMessage.topic == enqueue.ENQUEUE, OutboxMessage.payload["run_id"].astext == str(run.id))).all()
        pending_steps = range(run.next_step, run.step_count)
    deliver_admitted(admitted, publisher)
    if publisher is not None:
        try:
            publisher.revoke_steps(str(run.id), pending_steps, list(generations))
        except Exception:  # noqa: BLE001 — revocation is an optimisation; the status check is the guarantee
            log.warning("could not revoke pending step tasks of run %s", run_id, exc_info=True)
    return get_run(ctx, run_id)


def resume_run(ctx: TenantContext, run_id: uuid.UUID | str, publisher: Publisher | None) -> dict[str, Any]:
    """Continue a failed, cancelled, dead-lettered or waiting run from its first unfinished step (a waiting run
    leaves its wait: its step runs again)."""
    with session_scope() as s:
        run = _get_run(s, ctx.tenant_id, run_id)
        if run.status not in ("failed", "dead_lettered", "cancelled", "waiting"):
            raise AosError("CONFLICT", f"run is {run.status}; only failed, cancelled, dead-lettered or waiting "
                           "runs resume")
        outbox_ids = enqueue.requeue(s, run, reason="resume", fresh_retries=True)
    deliver_admitted(outbox_ids, publisher)
    return get_run(ctx, run_id)
