"""User schedules: a stored workflow run on a cron expression, once per tick however many beats run.

A schedule names a workflow and fires its **latest version** at each tick (each run
pins the version it started with, as every run does), with the schedule's inputs.
Cron expressions have five fields (minute hour day month weekday), or six with a
trailing seconds field (``*/10 * * * * 0`` = every 10 minutes at second 0; the
beat interval ``AOS_SCHEDULES_INTERVAL_S`` bounds how fine that can really be),
or a nickname (``@hourly``, ``@daily``, …). They are read in the schedule's
IANA time zone, so ``0 9 * * 1-5`` in ``Europe/Paris`` stays at 9:00 local time
across daylight-saving changes.

**Exactly once per tick.** ``fire_due`` claims due rows with ``FOR UPDATE SKIP
LOCKED`` and, in the same transaction, inserts the run (with its enqueue outbox
row) and moves ``next_fire_at`` past now. Two firers never hold the same row;
one that reads the row after the commit sees it is no longer due. A crash
before the commit leaves neither the run nor the advance, so the tick fires on
the next attempt.

**Missed ticks fire once.** When beat was down for an hour, a minutely schedule
fires one run at the next beat tick (not 60), and its next fire time is the next
cron time after now. The run's ``run.queued`` event records ``schedule_id`` and
``scheduled_for`` (the first tick that was missed).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aos import metrics
from aos.db.models import Schedule, Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.plan import parse_plan
from aos.services import outbox
from aos.services.listings import schedule_view
from aos.services.locks import Lease
from aos.services.publisher import Publisher
from aos.services.runs import persist_run
from aos.services.tenancy import TenantContext
from aos.skills.registry import default_registry

log = logging.getLogger(__name__)

NICKNAMES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
FIRE_BATCH = 100


def _problem(path: str, message: str, code: str = "SCHEDULE_INVALID") -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def cron_problems(cron: Any) -> list[dict[str, str]]:
    """Why ``cron`` is not an expression we accept (empty list: it is)."""
    if not isinstance(cron, str) or not cron.strip():
        return [_problem("$.cron", "must be a cron expression such as `*/15 * * * *`")]
    expr = cron.strip()
    if expr.lower() in NICKNAMES:
        return []
    fields = expr.split()
    if len(fields) not in (5, 6):
        return [_problem("$.cron", f"has {len(fields)} fields; use 5 (minute hour day month weekday) "
                                   "or 6 (the same plus seconds at the end)")]
    if not croniter.is_valid(expr):
        return [_problem("$.cron", f"{expr!r} does not parse as a cron expression "
                                   "(e.g. `*/15 * * * *`, `0 9 * * 1-5`)")]
    return []


def _zone(tz: Any) -> ZoneInfo | None:
    if not isinstance(tz, str) or not tz:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    """The first cron time strictly after ``after``, read in time zone ``tz``; returned in UTC."""
    local = after.astimezone(ZoneInfo(tz))
    return croniter(cron.strip(), local).get_next(datetime).astimezone(UTC)


def _latest_workflow(s: Session, tenant_id: uuid.UUID, name: str) -> Workflow | None:
    return s.scalar(select(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.name == name)
                    .order_by(Workflow.version.desc()).limit(1))


def create_schedule(ctx: TenantContext, workflow: str, cron: str, *, timezone: str = "UTC",
                    inputs: dict[str, Any] | None = None, enabled: bool = True) -> dict[str, Any]:
    """Schedule the stored workflow named ``workflow``. Every problem is reported with its path (422)."""
    problems = cron_problems(cron)
    if _zone(timezone) is None:
        problems.append(_problem("$.timezone", f"{timezone!r} is not an IANA time zone such as `Europe/Paris`",
                                 "VALIDATION_ERROR"))
    if inputs is not None and not isinstance(inputs, dict):
        problems.append(_problem("$.inputs", "must be a JSON object", "VALIDATION_ERROR"))
    if problems:
        raise AosError("VALIDATION_ERROR", f"{problems[0]['path']}: {problems[0]['message']}", problems=problems)
    with session_scope() as s:
        wf = _latest_workflow(s, ctx.tenant_id, workflow)
        if wf is None:
            raise AosError("NOT_FOUND", f"no workflow {workflow!r}; store it first (POST /api/v1/workflows)")
        # The inputs must fit the plan now; a later version that no longer fits shows in last_error.
        parse_plan(wf.plan, default_registry(), inputs=inputs or {})
        now = s.scalar(select(func.now()))
        sc = Schedule(tenant_id=ctx.tenant_id, workflow_id=wf.id, cron=cron.strip(), timezone=timezone,
                      inputs=inputs or {}, enabled=enabled, next_fire_at=next_fire(cron, timezone, now))
        s.add(sc)
        s.flush()
        s.refresh(sc)
        return schedule_view(sc, wf.name)


def _get(s: Session, ctx: TenantContext, schedule_id: str | uuid.UUID, *, lock: bool = False) -> Schedule:
    try:
        sid = uuid.UUID(str(schedule_id))
    except ValueError:
        raise AosError("NOT_FOUND", f"no schedule {schedule_id!r}") from None
    q = select(Schedule).where(Schedule.id == sid, Schedule.tenant_id == ctx.tenant_id)
    sc = s.scalar(q.with_for_update() if lock else q)
    if sc is None:  # another tenant's schedule is not found either
        raise AosError("NOT_FOUND", f"no schedule {schedule_id!r}")
    return sc


def _names(s: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return {wid: name for wid, name in s.execute(select(Workflow.id, Workflow.name).where(Workflow.id.in_(ids)))}


def get_schedule(ctx: TenantContext, schedule_id: str | uuid.UUID) -> dict[str, Any]:
    with session_scope() as s:
        sc = _get(s, ctx, schedule_id)
        return schedule_view(sc, _names(s, {sc.workflow_id}).get(sc.workflow_id))


def delete_schedule(ctx: TenantContext, schedule_id: str | uuid.UUID) -> None:
    with session_scope() as s:
        s.delete(_get(s, ctx, schedule_id, lock=True))


def set_enabled(ctx: TenantContext, schedule_id: str | uuid.UUID, enabled: bool) -> dict[str, Any]:
    """Pause or resume a schedule. Resuming starts from the next tick after now: ticks missed while it was
    paused do not fire."""
    with session_scope() as s:
        sc = _get(s, ctx, schedule_id, lock=True)
        if enabled and not sc.enabled:
            sc.next_fire_at = next_fire(sc.cron, sc.timezone, s.scalar(select(func.now())))
        sc.enabled = enabled
        s.flush()
        return schedule_view(sc, _names(s, {sc.workflow_id}).get(sc.workflow_id))


def _fire_one(s: Session, sc: Schedule, now: datetime) -> tuple[uuid.UUID, list[int]] | None:
    """Insert this tick's run (in a savepoint: a schedule that cannot start one does not stop the others)."""
    source = s.get(Workflow, sc.workflow_id)
    try:
        with s.begin_nested():
            wf = _latest_workflow(s, sc.tenant_id, source.name) if source is not None else None
            if wf is None:
                raise AosError("NOT_FOUND", "the scheduled workflow no longer exists")
            plan = parse_plan(wf.plan, default_registry(), inputs=sc.inputs)
            ctx = TenantContext(tenant_id=sc.tenant_id, tenant_name="", key_id=None, scopes=frozenset())
            started = persist_run(s, ctx, plan, workflow_id=wf.id, scope=f"workflow:{wf.name}", schedule_id=str(sc.id),
                                  scheduled_for=sc.next_fire_at.isoformat())
    except AosError as exc:
        sc.last_error = f"{exc.code}: {exc.message}"[:2000]
        log.warning("schedule %s could not start a run: %s", sc.id, sc.last_error)
        return None
    sc.last_run_id, sc.last_error, sc.last_fired_at = started[0], None, now
    return started


def fire_due(publisher: Publisher | None, *, lease: Lease | None = None, limit: int = FIRE_BATCH) -> list[uuid.UUID]:
    """Start one run for every due, enabled schedule and move each to its next tick; return the run ids.

    Claim, run insert and advance share one transaction (see the module docstring); with a ``lease``
    the transaction is fenced too. Runs are published after the commit (or by the outbox drain when the
    broker is down or ``publisher`` is None).
    """
    started: list[tuple[uuid.UUID, list[int]]] = []
    with session_scope() as s:
        if lease is not None:
            lease.fence(s)
        now = s.scalar(select(func.now()))
        due = s.scalars(select(Schedule).where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
                        .order_by(Schedule.next_fire_at).limit(limit).with_for_update(skip_locked=True)).all()
        for sc in due:
            try:
                upcoming = next_fire(sc.cron, sc.timezone, now)
            except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:  # stored before validation got stricter
                sc.enabled, sc.last_error = False, f"SCHEDULE_INVALID: {exc}; schedule disabled"[:2000]
                continue
            run = _fire_one(s, sc, now)
            if run is not None:
                started.append(run)
            # Past now, not past the missed tick: an outage fires once, not once per missed tick.
            sc.next_fire_at = upcoming
    for _run_id, outbox_ids in started:
        metrics.run_submitted()
        if publisher is not None:
            for outbox_id in outbox_ids:
                outbox.deliver_one(outbox_id, publisher)
    return [run_id for run_id, _ in started]
