"""Poison messages: a step whose deliveries keep dying is quarantined, never redelivered forever.

Real workers, real Redis, real Postgres. A delivery "dies" in two ways: its worker process is killed
(SIGKILL, as the OOM killer or a hard time limit does: Celery requeues the message and the next delivery
takes the open attempt over), or the step path raises outside the skill (here: a stored plan this code
cannot load, as after a bad deploy). After AOS_POISON_DELIVERIES (3) such deliveries the run fails with
STEP_POISONED and the step is a dead letter; nothing keeps looping until a person notices.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

from sqlalchemy import select, update

from aos.db.models import Checkpoint, DeadLetter, Run
from aos.db.session import session_scope
from aos.services import timeline
from aos.services.runs import submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.ops.conftest import QueuePublisher
from tests.support.http_server import RecordedRequest, Reply, serve_http
from tests.support.worker import pid_of, wait_for_run

TIMEOUT_S = 2  # lease = 2 + AOS_HARD_TIMEOUT_GRACE_S (3) + AOS_LEASE_GRACE_S (1) = 6 s per dead delivery


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def _open_attempt(run_id: uuid.UUID) -> tuple[str, int] | None:
    with session_scope() as s:
        run = s.get(Run, run_id)
        if run is None or not run.attempt_open or not run.lease_owner:
            return None
        return run.lease_owner, run.attempt_deliveries


def _run_failed_events(run_id: uuid.UUID) -> list[dict[str, Any]]:
    with session_scope() as s:
        return [e for e in timeline.events_of(s, run_id) if e["type"] == "run.failed"]


def test_a_step_that_kills_its_worker_three_times_is_quarantined(worker, tenant):
    ctx, _ = tenant

    def hang(req: RecordedRequest) -> Reply:
        return Reply(json={"ok": True}, delay_s=30)  # never answered in time: the test kills the worker first

    with serve_http({"POST /hang": hang}) as srv:
        plan = {"name": "poison-kill", "steps": [
            {"id": "call", "skill": "http.request", "timeout_s": TIMEOUT_S,
             "args": {"method": "POST", "url": srv.url("/hang"), "json": {}}}]}
        run_id = submit_run(ctx, plan, CeleryPublisher())
        for delivery in (1, 2, 3):
            owner, seen = _wait(lambda d=delivery: (a := _open_attempt(run_id)) and a[1] == d
                                and len(srv.requests) == d and a, 30, f"delivery {delivery} in flight")
            os.kill(pid_of(owner), signal.SIGKILL)
        run = wait_for_run(run_id, timeout=40)
        assert run.status == "failed", (run.status, run.error_code, worker.tail())
        assert run.error_code == "STEP_POISONED"
        assert "died 3 times" in run.error_message
        assert len(srv.requests) == 3  # the fourth delivery never called the skill

    with session_scope() as s:
        cps = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
        dead = s.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).all()
    # the open attempt ends as a failed checkpoint that counts its deliveries
    assert [(c.step_id, c.status, c.error_code, c.deliveries) for c in cps] == [("call", "failed", "STEP_POISONED", 3)]
    assert [(d.step_id, d.error_code, d.payload) for d in dead] == [
        ("call", "STEP_POISONED", {"run_id": str(run_id), "step_index": 0})]
    assert [e["data"]["code"] for e in _run_failed_events(run_id)] == ["STEP_POISONED"]
    assert "quarantined (STEP_POISONED)" in worker.tail(200_000)


def test_a_step_path_that_raises_is_quarantined_after_three_deliveries(worker, tenant):
    """The run's stored plan cannot be loaded by this code (as after a bad deploy): every delivery raises
    before the skill. Three deliveries, then the run fails with STEP_POISONED and a dead letter."""
    ctx, _ = tenant
    plan = {"name": "poison-raise", "steps": [
        {"id": "a", "skill": "json.transform", "args": {"input": {"v": 1}, "expr": "v"}}]}
    # published to a queue no worker reads, so the plan can be broken before any worker caches it
    run_id = submit_run(ctx, plan, QueuePublisher(f"nobody.{uuid.uuid4().hex}"))
    with session_scope() as s:
        s.execute(update(Run).where(Run.id == run_id).values(plan={"steps": "not a list of steps"}))
    CeleryPublisher().enqueue_run(str(run_id), 0, [5.0])

    run = wait_for_run(run_id, timeout=40)
    assert run.status == "failed", (run.status, run.error_code, worker.tail())
    assert run.error_code == "STEP_POISONED", run.error_message
    assert run.error_message.startswith("3 deliveries in a row raised outside the skill")
    with session_scope() as s:
        dead = s.scalars(select(DeadLetter).where(DeadLetter.run_id == run_id)).all()
        cps = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
    assert [(d.error_code, d.payload) for d in dead] == [("STEP_POISONED", {"run_id": str(run_id), "step_index": 0})]
    assert cps == []  # no delivery got as far as opening an attempt
    assert worker.tail(200_000).count(f"run {run_id} step 0: the step path raised") == 3
