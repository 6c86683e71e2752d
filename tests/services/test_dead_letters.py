"""Dead letters of the three kinds, replay (once, even when asked concurrently), discard, reconciliation."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from aos.db.models import DeadLetter, DeadLetterArchive, OutboxMessage, ReplayLog, Run, RunEvent
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services import dead_letters as dlq
from aos.services import listings, webhooks
from aos.services.outbox import deliver_one, drain_outbox
from aos.services.runs import resume_run, submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


class Dependency:
    """An HTTP dependency of a plan that fails (500) until it is switched up."""

    def __init__(self) -> None:
        self.up = False

    def __call__(self, _req):
        return Reply(200, json={"v": 7}) if self.up else Reply(500, json={"error": "down"})


def _failed_run(ctx, url: str) -> tuple[uuid.UUID, int]:
    """A run whose only step exhausted its retries on a transient error (dead_lettered): (run id, its dead letter's id)."""
    plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": url},
                       "retry": {"max_attempts": 2, "backoff_s": 0.05}}]}
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).status == "dead_lettered"  # retries exhausted on a transient error
    with session_scope() as s:
        (dl_id,) = s.scalars(select(DeadLetter.id).where(DeadLetter.run_id == run_id)).all()
    return run_id, dl_id


def _dl(dl_id: int) -> DeadLetter:
    with session_scope() as s:
        return s.get(DeadLetter, dl_id)


def _count(model, *where) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _enqueues(run_id) -> int:
    return _count(OutboxMessage, OutboxMessage.topic == "run.enqueue",
                  OutboxMessage.payload["run_id"].astext == str(run_id))


def _resumed(run_id) -> list[dict]:
    with session_scope() as s:
        return [e.data for e in s.scalars(select(RunEvent).where(RunEvent.run_id == run_id,
                                                                  RunEvent.type == "run.resumed"))]


def _insert_dl(ctx, **kw) -> int:
    values = {"tenant_id": ctx.tenant_id, "kind": "outbox", "payload": {"outbox_id": 0}, "error_code": "HTTP_NOT_FOUND",
              "error_message": "x", "attempts": 1, **kw}
    with session_scope() as s:
        dl = DeadLetter(**values)
        s.add(dl)
        s.flush()
        return dl.id


# --- step dead letters -------------------------------------------------------------------------------------------


def test_a_step_that_exhausts_its_retries_leaves_a_dead_letter_and_replay_resumes_the_run_once(tenant, worker):
    ctx, _ = tenant
    dep = Dependency()
    with serve_http({"/dep": dep}) as srv:
        run_id, dl_id = _failed_run(ctx, srv.url("/dep"))
        dl = _dl(dl_id)
        assert (dl.kind, dl.status, dl.step_id, dl.error_code, dl.attempts) == (
            "step", "open", "fetch", "HTTP_SERVER_ERROR", 2)
        assert dl.payload == {"run_id": str(run_id), "step_index": 0} and dl.tenant_id == ctx.tenant_id
        dep.up = True
        out = dlq.replay(dl_id, tenant_id=ctx.tenant_id, publisher=PUB)
        assert out["replayed_now"] is True and out["result"] == "requeued"
        assert out["dead_letter"]["status"] == "replayed" and out["dead_letter"]["replay"]["result"] == "requeued"
        assert wait_for_run(run_id, statuses=("succeeded",)).status == "succeeded"
        again = dlq.replay(dl_id, tenant_id=ctx.tenant_id, publisher=PUB)
    assert again["replayed_now"] is False and again["result"] == "requeued"
    assert [e["reason"] for e in _resumed(run_id)] == ["replay"] and _enqueues(run_id) == 2
    assert _count(ReplayLog, ReplayLog.dead_letter_id == dl_id) == 1


def _replay_in_child(env: dict[str, str], dl_id: int, threads: int) -> list[bool]:
    os.environ.update(env)
    from aos.config import reset_settings
    from aos.db.session import reset_engine

    reset_settings()
    reset_engine()
    from aos.services.dead_letters import replay as replay_once

    with ThreadPoolExecutor(threads) as pool:
        return [r["replayed_now"] for r in pool.map(lambda _: replay_once(dl_id), range(threads))]


def test_a_replay_asked_at_once_by_two_processes_happens_once(tenant, worker, aos_env):
    ctx, _ = tenant
    dep = Dependency()
    with serve_http({"/dep": dep}) as srv:
        run_id, dl_id = _failed_run(ctx, srv.url("/dep"))
        dep.up = True
        spawn = multiprocessing.get_context("spawn")
        pools = [spawn.Pool(1) for _ in range(2)]
        try:
            for p in pools:
                p.apply(os.getpid)  # started and imported before the race
            asks = [p.apply_async(_replay_in_child, (aos_env, dl_id, 4)) for p in pools]
            answers = [flag for a in asks for flag in a.get(timeout=60)]
        finally:
            for p in pools:
                p.terminate()
                p.join()
        assert sorted(answers) == [False] * 7 + [True]
        assert _count(ReplayLog, ReplayLog.dead_letter_id == dl_id) == 1
        assert len(_resumed(run_id)) == 1 and _enqueues(run_id) == 2
        drain_outbox(PUB, limit=100_000)  # the replay's enqueue row (the replaying processes had no publisher)
        assert wait_for_run(run_id, statuses=("succeeded",)).status == "succeeded"
        assert len(srv.requests) == 3  # two failed attempts, then the one replayed attempt


def test_replaying_a_step_whose_run_was_resumed_meanwhile_is_superseded(tenant, worker):
    ctx, _ = tenant
    dep = Dependency()
    with serve_http({"/dep": dep}) as srv:
        run_id, dl_id = _failed_run(ctx, srv.url("/dep"))
        dep.up = True
        resume_run(ctx, run_id, PUB)
        wait_for_run(run_id, statuses=("succeeded",))
        out = dlq.replay(dl_id, tenant_id=ctx.tenant_id, publisher=PUB)
    assert out["result"] == "superseded" and out["dead_letter"]["status"] == "resolved"
    assert [e["reason"] for e in _resumed(run_id)] == ["resume"]


# --- outbox dead letters ---------------------------------------------------------------------------------------------


def test_replaying_an_outbox_dead_letter_delivers_the_same_webhook_id_again(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_OUTBOX_MAX_ATTEMPTS="1")
    state = {"status": 500}
    with serve_http({"POST /hook": lambda req: Reply(state["status"])}) as srv:
        with session_scope() as s:
            webhooks.set_webhook(s, ctx.tenant_id, srv.url("/hook"))
            row = OutboxMessage(tenant_id=ctx.tenant_id, topic="run.failed",
                                payload={"run_id": str(uuid.uuid4()), "event": "run.failed", "data": {}})
            s.add(row)
            s.flush()
            row_id = row.id
        deliver_one(row_id, PUB)
        with session_scope() as s:
            assert s.get(OutboxMessage, row_id).status == "dead"
            dl_id = s.scalar(select(DeadLetter.id).where(DeadLetter.payload["outbox_id"].astext == str(row_id)))
        state["status"] = 200
        out = dlq.replay(dl_id, tenant_id=ctx.tenant_id)
        assert out["result"] == "requeued"
        assert deliver_one(row_id, PUB) is True
        ids = [r.headers["aos-webhook-id"] for r in srv.requests]
    assert ids == [str(row_id), str(row_id)]


# --- task dead letters ------------------------------------------------------------------------------------------------


def test_a_crashed_task_is_filed_once_per_failure_kind_and_its_replay_requeues_the_run(tenant, worker, aos_env):
    from aos.tasks.steps import continue_run

    ctx, _ = tenant
    plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 5, "expr": "@"}}]}
    run_id = submit_run(ctx, plan, None)  # queued, not yet published
    with session_scope() as s:  # its own enqueue stays aside, so only the replay can start it
        s.execute(update(OutboxMessage).where(OutboxMessage.payload["run_id"].astext == str(run_id))
                  .values(status="delivered"))
    for _ in range(2):  # a bad argument makes the task itself raise (TypeError), twice
        continue_run.apply_async(args=[str(run_id), "not-a-step", 0])
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while True:
        with session_scope() as s:
            dl = s.scalar(select(DeadLetter).where(DeadLetter.kind == "task", DeadLetter.run_id == run_id))
            if dl is not None and dl.attempts == 2:
                break
        assert datetime.now(UTC) < deadline, f"no task dead letter: {worker.tail()}"
        time.sleep(0.1)
    assert dl.tenant_id == ctx.tenant_id and dl.status == "open" and dl.error_code == "DATA_TYPE_ERROR"
    assert dl.payload["task"] == "aos.runs.continue" and dl.payload["args"] == [str(run_id), "not-a-step", 0]
    assert _count(DeadLetter, DeadLetter.run_id == run_id) == 1
    out = dlq.replay(dl.id, tenant_id=ctx.tenant_id, publisher=PUB)
    assert out["result"] == "requeued"
    assert wait_for_run(run_id).status == "succeeded"


def test_a_periodic_jobs_crash_belongs_to_no_tenant_coalesces_and_does_not_replay(tenant):
    ctx, _ = tenant
    name = f"aos.test.job.{uuid.uuid4().hex[:6]}"
    first = dlq.record_task_failure(name, "t1", [], {}, ConnectionError("database went away"))
    second = dlq.record_task_failure(name, "t2", [], {}, ConnectionError("database went away"))
    dl = _dl(first)
    assert first == second and dl.attempts == 2 and dl.tenant_id == dlq.SYSTEM_TENANT
    assert dl.payload["task_id"] == "t2" and dl.run_id is None
    assert dlq.get_dead_letter(None, first)["kind"] == "task"
    with pytest.raises(AosError) as err:
        dlq.get_dead_letter(ctx.tenant_id, first)  # not any tenant's
    assert err.value.code == "DEAD_LETTER_NOT_FOUND"
    with pytest.raises(AosError) as err:
        dlq.replay(first)
    assert err.value.code == "DEAD_LETTER_NOT_REPLAYABLE"
    assert _count(ReplayLog, ReplayLog.dead_letter_id == first) == 0  # the refused replay left nothing behind
    assert dlq.discard(first)["status"] == "discarded"


def test_the_same_crash_filed_many_times_at_once_is_one_dead_letter(aos_env):
    name = f"aos.test.job.{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda i: dlq.record_task_failure(name, f"t{i}", [], {}, TimeoutError("slow")), range(8)))
    assert len(ids) == 1 and _dl(ids.pop()).attempts == 8


# --- discard, scope ---------------------------------------------------------------------------------------------------


def test_discard_is_idempotent_and_closes_replay_and_a_replayed_one_cannot_be_discarded(tenant):
    ctx, _ = tenant
    dl_id = _insert_dl(ctx)
    assert dlq.discard(dl_id, tenant_id=ctx.tenant_id)["status"] == "discarded"
    assert dlq.discard(dl_id, tenant_id=ctx.tenant_id)["status"] == "discarded"
    assert _dl(dl_id).resolved_at is not None
    with pytest.raises(AosError) as err:
        dlq.replay(dl_id, tenant_id=ctx.tenant_id)
    assert err.value.code == "DEAD_LETTER_NOT_REPLAYABLE"
    replayed = _insert_dl(ctx, status="replayed")
    with pytest.raises(AosError) as err:
        dlq.discard(replayed, tenant_id=ctx.tenant_id)
    assert err.value.code == "CONFLICT"


def test_another_tenants_dead_letter_is_not_found_and_never_listed(tenant):
    ctx, _ = tenant
    mine = _insert_dl(ctx)
    with session_scope() as s:
        from aos.services.tenancy import create_tenant

        stranger = create_tenant(s, f"t-{uuid.uuid4().hex[:10]}").id
    theirs = _insert_dl(ctx, tenant_id=stranger)
    for call in (lambda: dlq.get_dead_letter(ctx.tenant_id, theirs), lambda: dlq.replay(theirs, tenant_id=ctx.tenant_id),
                 lambda: dlq.discard(theirs, tenant_id=ctx.tenant_id)):
        with pytest.raises(AosError) as err:
            call()
        assert err.value.code == "DEAD_LETTER_NOT_FOUND"
    listed = [d["id"] for d in listings.dead_letters(ctx.tenant_id, limit=200)["items"]]
    assert mine in listed and theirs not in listed
    assert _dl(theirs).status == "open"


# --- reconciliation ----------------------------------------------------------------------------------------------------


def test_reconcile_redrives_a_transient_dead_letter_and_the_run_completes(tenant, worker, settings_env):
    ctx, _ = tenant
    dep = Dependency()
    with serve_http({"/dep": dep}) as srv:
        run_id, dl_id = _failed_run(ctx, srv.url("/dep"))
        settings_env(AOS_DLQ_REDRIVE_AFTER_S="3600")
        dlq.redrive_transient(tenant_id=ctx.tenant_id)
        assert _dl(dl_id).status == "open"  # too young to re-drive
        dep.up = True
        settings_env(AOS_DLQ_REDRIVE_AFTER_S="0")
        dlq.reconcile(PUB, tenant_id=ctx.tenant_id)
        dl = _dl(dl_id)
        assert dl.status == "replayed"
        with session_scope() as s:
            assert s.scalar(select(ReplayLog.result).where(ReplayLog.dead_letter_id == dl_id)) == "redriven"
        assert wait_for_run(run_id, statuses=("succeeded",)).status == "succeeded"


def test_reconcile_leaves_permanent_failures_and_work_that_dead_lettered_too_often(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_DLQ_REDRIVE_AFTER_S="0", AOS_DLQ_REDRIVE_MAX="2")
    with session_scope() as s:
        run = Run(tenant_id=ctx.tenant_id, plan={"steps": []}, plan_hash="h", skill_versions={}, inputs={},
                  step_count=1, status="failed")
        s.add(run)
        s.flush()
        run_id = run.id
    same_step = {"kind": "step", "run_id": run_id, "step_id": "s", "payload": {"run_id": str(run_id), "step_index": 0}}
    permanent = _insert_dl(ctx, **same_step, error_code="HTTP_NOT_FOUND")
    with session_scope() as s:  # an earlier dead letter of the same step, archived since
        s.add(DeadLetterArchive(id=permanent, tenant_id=ctx.tenant_id, kind="step", run_id=run_id, step_id="s",
                                payload={}, error_code="HTTP_SERVER_ERROR", status="replayed"))
    capped = _insert_dl(ctx, **same_step, error_code="HTTP_SERVER_ERROR")
    with session_scope() as s:
        assert dlq.prior_dead_letters(s, _dl(capped)) == 2  # the live permanent one and the archived one
    dlq.redrive_transient(tenant_id=ctx.tenant_id)
    assert _dl(permanent).status == "open" and _dl(capped).status == "open"
    assert _enqueues(run_id) == 0
    with session_scope() as s:
        assert s.get(Run, run_id).status == "failed"


def test_reconcile_resolves_dead_letters_whose_work_moved_on(tenant):
    ctx, _ = tenant
    with session_scope() as s:
        done = Run(tenant_id=ctx.tenant_id, plan={"steps": []}, plan_hash="h", skill_versions={}, inputs={},
                   step_count=1, status="succeeded", next_step=1)
        stuck = Run(tenant_id=ctx.tenant_id, plan={"steps": []}, plan_hash="h", skill_versions={}, inputs={},
                    step_count=1, status="failed", next_step=0)
        s.add_all([done, stuck])
        s.flush()
        row = OutboxMessage(tenant_id=ctx.tenant_id, topic="run.failed", payload={}, status="delivered")
        dead_row = OutboxMessage(tenant_id=ctx.tenant_id, topic="run.failed", payload={}, status="dead")
        s.add_all([row, dead_row])
        s.flush()
        ids = {k: v.id for k, v in {"done": done, "stuck": stuck, "row": row, "dead_row": dead_row}.items()}
    moved_on = _insert_dl(ctx, kind="step", run_id=ids["done"], payload={"step_index": 0}, error_code="HTTP_TIMEOUT")
    still = _insert_dl(ctx, kind="step", run_id=ids["stuck"], payload={"step_index": 0}, error_code="HTTP_TIMEOUT")
    delivered = _insert_dl(ctx, payload={"outbox_id": ids["row"]})
    still_dead = _insert_dl(ctx, payload={"outbox_id": ids["dead_row"]})
    task_done = _insert_dl(ctx, kind="task", run_id=ids["done"], payload={"task": "aos.steps.execute"})
    assert dlq.resolve_stale() >= 3
    assert [_dl(i).status for i in (moved_on, still, delivered, still_dead, task_done)] == [
        "resolved", "open", "resolved", "open", "resolved"]


def test_archive_moves_closed_and_very_old_dead_letters_in_batches_and_keeps_the_rest(tenant, settings_env):
    ctx, _ = tenant
    settings_env(AOS_DLQ_ARCHIVE_AFTER_S="3600", AOS_DLQ_ARCHIVE_OPEN_AFTER_DAYS="30", AOS_DLQ_BATCH="2")
    old = datetime.now(UTC) - timedelta(days=31)
    closed = [_insert_dl(ctx, status=st, resolved_at=datetime.now(UTC) - timedelta(hours=2))
              for st in ("replayed", "discarded", "resolved")]
    ancient_open = _insert_dl(ctx, created_at=old)
    fresh_closed = _insert_dl(ctx, status="discarded", resolved_at=datetime.now(UTC))
    young_open = _insert_dl(ctx)
    assert dlq.archive() >= 4
    moved = closed + [ancient_open]
    with session_scope() as s:
        assert s.scalars(select(DeadLetter.id).where(DeadLetter.id.in_(moved))).all() == []
        archived = {a.id: a for a in s.scalars(select(DeadLetterArchive).where(DeadLetterArchive.id.in_(moved)))}
        assert sorted(archived) == sorted(moved)
        assert archived[ancient_open].status == "open" and archived[closed[1]].status == "discarded"
        assert archived[closed[0]].payload == {"outbox_id": 0} and archived[closed[0]].resolved_at is not None
        assert all(a.tenant_id == ctx.tenant_id for a in archived.values())
    assert _dl(fresh_closed).status == "discarded" and _dl(young_open).status == "open"
    with pytest.raises(AosError):
        dlq.get_dead_letter(ctx.tenant_id, closed[0])  # archived: gone from the live table


def test_the_beat_task_reconciles_on_a_real_worker_under_its_lease(tenant, worker, aos_env):
    from aos.tasks.dlq import reconcile

    ctx, _ = tenant
    with session_scope() as s:
        done = Run(tenant_id=ctx.tenant_id, plan={"steps": []}, plan_hash="h", skill_versions={}, inputs={},
                   step_count=1, status="succeeded", next_step=1)
        s.add(done)
        s.flush()
        run_id = done.id
    dl_id = _insert_dl(ctx, kind="step", run_id=run_id, payload={"step_index": 0}, error_code="HTTP_TIMEOUT")
    reconcile.apply_async(queue=aos_env["AOS_STEP_QUEUE"])  # the session's worker consumes only this queue
    deadline = time.monotonic() + 30
    while _dl(dl_id).status != "resolved":
        assert time.monotonic() < deadline, worker.tail()
        time.sleep(0.1)
    with session_scope() as s:
        from aos.db.models import DistributedLock

        lock = s.get(DistributedLock, "aos.dlq.reconcile")
        assert lock is not None and lock.fencing_token >= 1
