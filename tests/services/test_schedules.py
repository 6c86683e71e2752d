"""User schedules: validation with paths, time zones, a due schedule firing exactly once however many
processes fire at the same moment, missed ticks firing once, and the scheduled run really executing."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from aos.db.models import Run, RunEvent, Schedule, Workflow
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import listings
from aos.services.schedules import (
    create_schedule,
    delete_schedule,
    fire_due,
    get_schedule,
    next_fire,
    set_enabled,
)
from aos.services.workflows import save_workflow
from aos.skills.registry import default_registry
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run


def _plan() -> dict:
    return {"inputs": {"x": {"a": 1, "b": 2}},
            "steps": [{"id": "pick", "skill": "json.transform", "args": {"input": {"$ref": "inputs.x"}, "expr": "a"}}]}


def _workflow(ctx) -> str:  # noqa: ANN001
    name = f"wf-{uuid.uuid4().hex[:8]}"
    save_workflow(ctx, name, _plan())
    return name


def _make_due(schedule_id: str, ago: timedelta) -> datetime:
    """Pretend beat last looked ``ago`` earlier: the schedule's next tick is in the past."""
    when = datetime.now(UTC) - ago
    with session_scope() as s:
        s.execute(update(Schedule).where(Schedule.id == uuid.UUID(schedule_id)).values(next_fire_at=when))
    return when


def _runs_of(schedule_id: str) -> list[tuple[uuid.UUID, dict]]:
    with session_scope() as s:
        rows = s.execute(select(RunEvent.run_id, RunEvent.data).where(
            RunEvent.type == "run.queued", RunEvent.data["schedule_id"].astext == schedule_id)).all()
        return [(r[0], r[1]) for r in rows]


def _problems(exc: AosError) -> dict[str, str]:
    return {p["path"]: p["code"] for p in exc.problems}


def test_bad_cron_timezone_and_inputs_are_refused_with_their_paths(tenant):
    ctx, _ = tenant
    wf = _workflow(ctx)
    with pytest.raises(AosError) as e:
        create_schedule(ctx, wf, "61 * * * *", timezone="Mars/Olympus", inputs=[1])  # type: ignore[arg-type]
    assert e.value.code == "VALIDATION_ERROR"
    assert _problems(e.value) == {"$.cron": "SCHEDULE_INVALID", "$.timezone": "VALIDATION_ERROR",
                                  "$.inputs": "VALIDATION_ERROR"}
    for cron in ("", "every minute", "* * * *", "* * * * * * *"):
        with pytest.raises(AosError) as e:
            create_schedule(ctx, wf, cron)
        assert e.value.code == "VALIDATION_ERROR" and "$.cron" in _problems(e.value), cron
    with pytest.raises(AosError) as e:
        create_schedule(ctx, "no-such-workflow", "* * * * *")
    assert e.value.code == "NOT_FOUND"
    assert listings.schedules(ctx.tenant_id) == []


def test_cron_is_read_in_the_schedules_time_zone_across_daylight_saving():
    winter = next_fire("0 9 * * *", "Europe/Paris", datetime(2025, 1, 15, 12, tzinfo=UTC))
    summer = next_fire("0 9 * * *", "Europe/Paris", datetime(2025, 7, 15, 12, tzinfo=UTC))
    assert winter == datetime(2025, 1, 16, 8, tzinfo=UTC) and summer == datetime(2025, 7, 16, 7, tzinfo=UTC)
    assert next_fire("* * * * * */10", "UTC", datetime(2025, 1, 1, 0, 0, 3, tzinfo=UTC)) == \
        datetime(2025, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert next_fire("@hourly", "UTC", datetime(2025, 1, 1, 0, 30, tzinfo=UTC)) == datetime(2025, 1, 1, 1, tzinfo=UTC)


def test_create_list_pause_resume_delete_and_other_tenants_see_nothing(tenant, aos_env):
    from aos.db.session import session_scope as scope
    from aos.services.tenancy import authenticate, create_api_key, create_tenant

    ctx, _ = tenant
    sc = create_schedule(ctx, _workflow(ctx), "*/5 * * * *", timezone="Europe/Paris", inputs={"x": {"a": 3}})
    assert sc["enabled"] and sc["timezone"] == "Europe/Paris"
    assert datetime.fromisoformat(sc["next_fire_at"]) > datetime.now(UTC)
    assert [s["id"] for s in listings.schedules(ctx.tenant_id)] == [sc["id"]]
    with scope() as s:
        other_t = create_tenant(s, f"t-{uuid.uuid4().hex[:10]}")
        key, _ = create_api_key(s, other_t, "k", ("admin",))
        other = authenticate(s, key)
    assert listings.schedules(other.tenant_id) == []
    for call in (lambda: get_schedule(other, sc["id"]), lambda: delete_schedule(other, sc["id"]),
                 lambda: set_enabled(other, sc["id"], False), lambda: get_schedule(ctx, "not-a-uuid")):
        with pytest.raises(AosError) as e:
            call()
        assert e.value.code == "NOT_FOUND"
    assert set_enabled(ctx, sc["id"], False)["enabled"] is False
    _make_due(sc["id"], timedelta(hours=3))
    assert _runs_of(sc["id"]) == [] and sc["id"] not in map(str, fire_due(None))  # paused: nothing fires
    resumed = set_enabled(ctx, sc["id"], True)  # from the next tick after now: the paused hours do not fire
    assert datetime.fromisoformat(resumed["next_fire_at"]) > datetime.now(UTC)
    delete_schedule(ctx, sc["id"])
    assert listings.schedules(ctx.tenant_id) == []


def test_a_due_schedule_fires_exactly_once_when_four_firers_race(tenant):
    ctx, _ = tenant
    sc = create_schedule(ctx, _workflow(ctx), "* * * * *")
    # Beat was down for an hour: 60 minutely ticks were missed. They fire once, not 60 times.
    missed_since = _make_due(sc["id"], timedelta(minutes=60))
    default_registry()  # loaded before the race, so the four firers reach the database together
    n = 4
    barrier = threading.Barrier(n)
    fired: list[uuid.UUID] = []

    def firer() -> None:
        barrier.wait(timeout=30)
        fired.extend(fire_due(None))  # each its own connection and transaction

    threads = [threading.Thread(target=firer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    runs = _runs_of(sc["id"])
    assert len(runs) == 1, runs
    run_id, data = runs[0]
    assert fired.count(run_id) == 1
    assert datetime.fromisoformat(data["scheduled_for"]) == missed_since
    after = get_schedule(ctx, sc["id"])
    # advanced past every missed tick in the same transaction, to the first minute after the firing
    assert datetime.fromisoformat(after["next_fire_at"]) >= missed_since + timedelta(minutes=59)
    assert datetime.fromisoformat(after["next_fire_at"]) > datetime.fromisoformat(after["last_fired_at"])
    assert after["last_run_id"] == str(run_id) and after["last_error"] is None
    delete_schedule(ctx, sc["id"])


def test_a_schedule_that_cannot_start_a_run_records_why_and_does_not_block_the_others(tenant):
    ctx, _ = tenant
    broken_wf, good_wf = _workflow(ctx), _workflow(ctx)
    broken = create_schedule(ctx, broken_wf, "* * * * *", inputs={"x": {"a": 5}})
    good = create_schedule(ctx, good_wf, "* * * * *")
    # The stored plan no longer validates (as after an upgrade that tightened validation, or a skill
    # plugin that was uninstalled): the tick cannot start a run.
    with session_scope() as s:
        s.execute(update(Workflow).where(Workflow.tenant_id == ctx.tenant_id, Workflow.name == broken_wf)
                  .values(plan={"steps": []}))
    _make_due(broken["id"], timedelta(seconds=30))
    _make_due(good["id"], timedelta(seconds=20))
    fire_due(None)
    assert _runs_of(broken["id"]) == [] and len(_runs_of(good["id"])) == 1
    after = get_schedule(ctx, broken["id"])
    assert after["last_error"].startswith("PLAN_INVALID") and after["last_run_id"] is None
    assert datetime.fromisoformat(after["next_fire_at"]) > datetime.now(UTC) - timedelta(seconds=5)
    delete_schedule(ctx, broken["id"])
    delete_schedule(ctx, good["id"])


def test_a_fired_run_uses_the_latest_workflow_version_and_executes(tenant, worker):
    ctx, _ = tenant
    wf = _workflow(ctx)
    sc = create_schedule(ctx, wf, "* * * * *", inputs={"x": {"a": 10, "b": 20}})
    v2 = save_workflow(ctx, wf, {**_plan(), "steps": [{"id": "pick", "skill": "json.transform",
                                                      "args": {"input": {"$ref": "inputs.x"}, "expr": "b"}}]})
    _make_due(sc["id"], timedelta(seconds=5))
    (run_id,) = [r for r in fire_due(CeleryPublisher()) if r in {x for x, _ in _runs_of(sc["id"])}]
    run = wait_for_run(run_id)
    assert run.status == "succeeded" and str(run.workflow_id) == v2["id"]
    from aos.services.runs import get_run

    assert get_run(ctx, run_id)["steps"][0]["output"] == 20
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Run).where(Run.workflow_id == uuid.UUID(v2["id"]))) == 1
    delete_schedule(ctx, sc["id"])
