"""Durability of the execution engine against real failures: a worker killed mid-step, a broker that
is down when a run is submitted, a step delivered twice at once, workers racing on one budget, the
retry schedule, and skills that crash.

Everything is real: Postgres, Redis brokers, prefork Celery workers in their own processes, HTTP
servers on 127.0.0.1. Timing knobs come from the session's ``aos_env``: AOS_HARD_TIMEOUT_GRACE_S=3,
AOS_LEASE_GRACE_S=1, AOS_MAX_COUNTDOWN_S=5, so a step with ``timeout_s`` 5 holds a lease of 9 s.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from aos.db.models import Checkpoint, OutboxMessage, Run
from aos.db.session import session_scope
from aos.runtime.backoff import backoff_ceiling, retry_countdown
from aos.runtime.catalog import CATALOG
from aos.runtime.invoke import invoke_skill
from aos.services import timeline
from aos.skills.base import RetryPolicy, Skill, SkillContext, SkillResult
from tests.engine.conftest import init_helper_process
from tests.support.http_server import RecordedRequest, Reply, serve_http
from tests.support.worker import pid_of, wait_for_run

STEP_TIMEOUT_S = 5  # lease = 5 + AOS_HARD_TIMEOUT_GRACE_S (3) + AOS_LEASE_GRACE_S (1) = 9 s


# --------------------------------------------------------------------------- helpers


def _wait(predicate, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _checkpoints(run_id: uuid.UUID) -> list[Checkpoint]:
    with session_scope() as s:
        return list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)
                              .order_by(Checkpoint.step_index, Checkpoint.attempt)).all())


def _events(run_id: uuid.UUID, type_: str | None = None) -> list[SimpleNamespace]:
    """The run's timeline as the API reads it (a step's own started/succeeded events live on its checkpoint)."""
    with session_scope() as s:
        events = timeline.events_of(s, uuid.UUID(str(run_id)))
    return [SimpleNamespace(**e) for e in events if type_ is None or e["type"] == type_]


def _running_attempt(run_id: uuid.UUID, step_index: int) -> SimpleNamespace | None:
    """The attempt of step ``step_index`` in progress (it lives on the run row until it ends) and its worker."""
    with session_scope() as s:
        run = s.get(Run, run_id)
        if run is None or not run.attempt_open or run.next_step != step_index or not run.lease_owner:
            return None
        return SimpleNamespace(worker=run.lease_owner, attempt=run.attempt, deliveries=run.attempt_deliveries)


def _successes_per_step(run_id: uuid.UUID) -> dict[int, int]:
    with session_scope() as s:
        rows = s.execute(select(Checkpoint.step_index, func.count()).where(
            Checkpoint.run_id == run_id, Checkpoint.status == "succeeded").group_by(Checkpoint.step_index)).all()
    return dict(rows)  # type: ignore[arg-type]


def _enqueue_rows(run_id: uuid.UUID) -> list[OutboxMessage]:
    with session_scope() as s:
        return list(s.scalars(select(OutboxMessage).where(
            OutboxMessage.topic == "run.enqueue", OutboxMessage.payload["run_id"].astext == str(run_id))
            .order_by(OutboxMessage.id)).all())


def _submit(ctx, plan: dict[str, Any]) -> uuid.UUID:
    from aos.services.runs import submit_run
    from aos.tasks.publisher import CeleryPublisher

    return submit_run(ctx, plan, CeleryPublisher())


def _slow_first_request(delay_s: float):
    """A handler that answers its first request after ``delay_s`` and every later one at once."""
    lock = threading.Lock()
    seen = [0]

    def handle(req: RecordedRequest) -> Reply:
        with lock:
            seen[0] += 1
            first = seen[0] == 1
        return Reply(json={"charged": True, "key": req.headers.get("idempotency-key")},
                     delay_s=delay_s if first else 0.0)

    return handle


def _three_step_plan(url: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"amount": 42},
        "steps": [
            {"id": "prepare", "skill": "json.transform",
             "args": {"input": {"amount": {"$ref": "inputs.amount"}}, "expr": "{amount: amount, currency: 'EUR'}"}},
            {"id": "charge", "skill": "http.request", "timeout_s": STEP_TIMEOUT_S,
             "args": {"method": "POST", "url": url, "json": {"$ref": "steps.prepare.output"}}},
            {"id": "receipt", "skill": "json.transform",
             "args": {"input": {"$ref": "steps.charge.output.json"}, "expr": "charged"}},
        ],
    }


def _assert_charged_once_per_key(run_id: uuid.UUID, requests: list[RecordedRequest]) -> None:
    """The run succeeded, each step has exactly one successful checkpoint, every delivery of the
    charge carried the same idempotency key, and the retried delivery served the same attempt."""
    assert _successes_per_step(run_id) == {0: 1, 1: 1, 2: 1}
    assert len(requests) >= 2, f"the charge was delivered {len(requests)} time(s); the kill did not land"
    keys = {r.headers.get("idempotency-key") for r in requests}
    assert keys == {f"{run_id}:charge:1"}, keys
    charge = [cp for cp in _checkpoints(run_id) if cp.step_index == 1]
    assert [(cp.attempt, cp.status) for cp in charge] == [(1, "succeeded")]
    assert charge[0].deliveries >= 2
    assert charge[0].outcome["output"]["json"] == {"charged": True, "key": f"{run_id}:charge:1"}
    assert [r.json() for r in requests] == [{"amount": 42, "currency": "EUR"}] * len(requests)


# Functions run in spawned helper processes (see conftest.helper_process): they must be importable.


def _post_run(key: str, plan: dict[str, Any]) -> tuple[int, Any, float]:
    """POST /api/v1/runs through a real app built in this process; the POST's duration."""
    from aos.web.app import create_app

    client = create_app().test_client()
    t0 = time.monotonic()
    resp = client.post("/api/v1/runs", json={"plan": plan}, headers={"Authorization": f"Bearer {key}"})
    return resp.status_code, resp.get_json(), time.monotonic() - t0


def _drain_until_enqueued(run_id: str, timeout: float) -> int:
    """What beat's aos.outbox.drain does, repeated until this run's enqueue row is delivered."""
    from aos.services.outbox import drain_outbox
    from aos.tasks.publisher import CeleryPublisher

    publisher = CeleryPublisher()
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        rounds += 1
        drain_outbox(publisher)
        if all(m.status == "delivered" for m in _enqueue_rows(uuid.UUID(run_id))):
            return rounds
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox row of run {run_id} not delivered after {timeout}s")
        time.sleep(0.25)


def _reap_until_resumed(run_id: str, timeout: float) -> int:
    """What beat's aos.runs.reap and aos.outbox.drain do, until the reaper has re-published this run."""
    from aos.services.outbox import drain_outbox
    from aos.services.reaper import reap_silent_runs
    from aos.tasks.publisher import CeleryPublisher

    publisher = CeleryPublisher()
    rid = uuid.UUID(run_id)
    deadline = time.monotonic() + timeout
    rounds = 0
    while True:
        rounds += 1
        reap_silent_runs()
        drain_outbox(publisher)
        resumed = [e for e in _events(rid, "run.resumed") if e.data.get("reason") == "reaper"]
        if resumed and all(m.status == "delivered" for m in _enqueue_rows(rid)):
            return rounds
        if time.monotonic() > deadline:
            raise AssertionError(f"the reaper did not resume run {run_id} within {timeout}s")
        time.sleep(0.25)


def _reserve_many(env: dict[str, str], tenant_id: str, tries: int, barrier) -> int:
    """One OS process hammering the tenant's day: ``tries`` reservations of 0.01 USD, each with the
    statement a step's claim uses, on the process's own engine connection."""
    init_helper_process(env)
    from aos.db import direct, step_store
    from aos.runtime import budget

    with direct.relaxed() as conn:  # connect before the race starts
        barrier.wait(timeout=60)
        won = 0
        for _ in range(tries):
            if step_store.reserve_tenant_day(conn, uuid.UUID(tenant_id), budget.today(), Decimal("0.01")):
                won += 1
    return won


def _reserve_worker(env, tenant_id, tries, barrier, results) -> None:
    results.put(_reserve_many(env, tenant_id, tries, barrier))


def _claim_many(env: dict[str, str], run_id: str, name: str, barrier) -> bool:
    """One OS process claiming step 0 of the run at the same moment as the others."""
    init_helper_process(env)
    from aos.db import direct, step_store

    with direct.relaxed() as conn:
        barrier.wait(timeout=60)
        return step_store.claim(conn, step_store.ClaimRequest(
            run_id=uuid.UUID(run_id), index=0, step_id="a", skill="json.transform@1", worker=f"race:{name}",
            takeover=(), lease_s=60, cost_usd=Decimal("0.01"), tokens=0)) is not None


def _claim_worker(env, run_id, name, barrier, results) -> None:
    results.put(_claim_many(env, run_id, name, barrier))


def _race(target, args_of, procs: int) -> list[Any]:
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(procs), mp.Queue()
    env = {k: v for k, v in os.environ.items() if k.startswith("AOS_")}
    children = [mp.Process(target=target, args=(env, *args_of(i), barrier, results)) for i in range(procs)]
    for p in children:
        p.start()
    try:
        return [results.get(timeout=60) for _ in children]
    finally:
        for p in children:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


# --------------------------------------------------------------------------- 1. killed workers


def test_worker_killed_mid_step_the_run_still_succeeds(worker, tenant):
    """SIGKILL the pool process executing an HTTP POST: the parent requeues the message
    (acks_late + reject_on_worker_lost), the redelivery waits for the dead process's lease, takes
    its attempt over and re-sends it with the same Idempotency-Key."""
    ctx, _ = tenant
    with serve_http({"POST /charge": _slow_first_request(3.0)}) as srv:
        run_id = _submit(ctx, _three_step_plan(srv.url("/charge"), "kill-pool-child"))
        cp = _wait(lambda: _running_attempt(run_id, 1) if srv.requests else None, 30,
                   "the charge request to be in flight")
        pid = pid_of(cp.worker)
        assert pid in worker.child_pids(), (pid, worker.child_pids(), worker.tail())
        os.kill(pid, signal.SIGKILL)

        run = wait_for_run(run_id, timeout=45)
        assert run.status == "succeeded", (run.error_code, run.error_message, worker.tail())
        _assert_charged_once_per_key(run_id, srv.requests)
    redelivered = _events(run_id, "step.redelivered")
    assert redelivered and redelivered[-1].step_id == "charge" and redelivered[-1].data["attempt"] == 1


def test_whole_worker_killed_mid_step_the_reaper_resumes_the_run(tenant, private_broker, start_worker,
                                                                 helper_process):
    """SIGKILL a whole worker (parent and pool): Redis would redeliver only after its visibility
    timeout (2 h), so the reaper is the recovery. The run lives on a private broker so that only
    this test's workers can take its messages; the reaper and the drain run in a helper process
    configured with that broker, as beat would be."""
    _, key = tenant
    broker_env = {"AOS_BROKER_URL": private_broker.url, "AOS_REAPER_GRACE_S": "1"}
    doomed = start_worker("doomed", **broker_env)
    beat = helper_process(**broker_env)
    with serve_http({"POST /charge": _slow_first_request(3.0)}) as srv:
        status, body, _ = beat.apply_async(
            _post_run, (key, _three_step_plan(srv.url("/charge"), "kill-whole-worker"))).get(timeout=60)
        assert status == 201, body
        run_id = uuid.UUID(body["id"])
        cp = _wait(lambda: _running_attempt(run_id, 1) if srv.requests else None, 30,
                   "the charge request to be in flight")
        assert pid_of(cp.worker) in doomed.child_pids()
        assert doomed.proc is not None
        os.killpg(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(timeout=10)
        fresh = start_worker("fresh", **broker_env)

        # Nothing redelivers the message now: the run is stuck until its lease expires and the reaper acts.
        rounds = beat.apply_async(_reap_until_resumed, (str(run_id), 40)).get(timeout=60)
        assert rounds >= 1
        run = wait_for_run(run_id, timeout=30)
        assert run.status == "succeeded", (run.error_code, run.error_message, fresh.tail())
        _assert_charged_once_per_key(run_id, srv.requests)
    resumed = _events(run_id, "run.resumed")
    assert [e.data["from_step"] for e in resumed] == [1]


# --------------------------------------------------------------------------- 2. broker down


def test_broker_down_at_submission_run_succeeds_after_it_returns(tenant, private_broker, start_worker,
                                                                   helper_process):
    """The API commits the run and its outbox row even when the broker refuses connections; once the
    broker is back, draining the outbox (beat's job) publishes the run and it completes."""
    _, key = tenant
    broker_env = {"AOS_BROKER_URL": private_broker.url}
    w = start_worker("broker-down", **broker_env)
    api = helper_process(**broker_env)
    plan = {"name": "broker-down", "inputs": {"n": [1, 2, 3]},
            "steps": [{"id": "sum", "skill": "json.transform", "args": {"input": {"$ref": "inputs.n"},
                                                                         "expr": "sum(@)"}},
                      {"id": "double", "skill": "json.transform",
                       "args": {"input": {"$ref": "steps.sum.output"}, "expr": "sum([@, @])"}}]}
    # The API process has talked to the broker before it goes down (its pooled connection goes stale).
    status, body, _ = api.apply_async(_post_run, (key, {"name": "warm-up", "steps": [
        {"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]})).get(timeout=60)
    assert status == 201, body
    assert wait_for_run(uuid.UUID(body["id"]), timeout=30).status == "succeeded"

    private_broker.stop()
    assert not private_broker.ping()
    status, body, elapsed = api.apply_async(_post_run, (key, plan)).get(timeout=60)
    assert status == 201, body
    assert elapsed < 10, f"POST /runs took {elapsed:.1f}s with the broker down"
    run_id = uuid.UUID(body["id"])
    assert body["status"] == "queued"
    [row] = _enqueue_rows(run_id)
    assert row.status == "pending" and row.attempts >= 1 and row.last_error, row.__dict__
    time.sleep(0.5)
    with session_scope() as s:
        assert s.get(Run, run_id).status == "queued"  # nothing ran: nothing reached a worker

    private_broker.start()
    rounds = api.apply_async(_drain_until_enqueued, (str(run_id), 30)).get(timeout=60)
    assert rounds >= 1
    run = wait_for_run(run_id, timeout=45)
    assert run.status == "succeeded", (run.error_code, run.error_message, w.tail())
    outputs = {cp.step_id: cp.outcome["output"] for cp in _checkpoints(run_id)}
    assert outputs == {"sum": 6, "double": 12}
    [row] = _enqueue_rows(run_id)
    assert row.status == "delivered"


def test_worker_survives_a_broker_restart_while_a_step_runs(tenant, private_broker, start_worker, helper_process):
    """Redis restarts while a step's HTTP call is in flight: the worker reconnects instead of dying
    (kombu's restore_unacked on the detached transport raised AttributeError, which Celery treats as
    unrecoverable; aos.tasks.resilience turns it into the connection error it is), the step finishes,
    and the rest of the chain runs on the new connection."""
    _, key = tenant
    broker_env = {"AOS_BROKER_URL": private_broker.url}
    w = start_worker("broker-restart", **broker_env)
    api = helper_process(**broker_env)
    with serve_http({"POST /slow": Reply(json={"ok": True}, delay_s=2.0)}) as srv:
        plan = {"name": "broker-restart", "steps": [
            {"id": "slow", "skill": "http.request", "timeout_s": STEP_TIMEOUT_S,
             "args": {"method": "POST", "url": srv.url("/slow"), "json": {}}},
            {"id": "after", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
        status, body, _ = api.apply_async(_post_run, (key, plan)).get(timeout=60)
        assert status == 201, body
        _wait(lambda: srv.requests, 30, "the step's request to be in flight")
        private_broker.stop()
        time.sleep(0.5)
        private_broker.start()

        def settled() -> bool:
            with session_scope() as s:
                final = s.get(Run, uuid.UUID(body["id"])).status in ("succeeded", "failed")
            return final or (w.proc is not None and w.proc.poll() is not None)

        _wait(settled, 30, "the run to finish or the worker to exit", interval=0.2)
    assert w.proc is not None and w.proc.poll() is None, f"the worker exited: {w.tail(1500)}"
    assert wait_for_run(uuid.UUID(body["id"]), timeout=5).status == "succeeded"
    assert "Connection to broker lost" in w.tail(200_000), "the restart did not reach the worker's consumer"


# --------------------------------------------------------------------------- 3. duplicate delivery


def test_same_step_delivered_twice_at_once_executes_once(worker, second_worker, tenant, aos_env):
    """Two workers (2 processes each) receive the same step at the same moment: one claims it, the
    other backs off on the lease and later finds the checkpoint. One HTTP call, one checkpoint."""
    from aos.tasks.steps import execute

    ctx, _ = tenant
    with serve_http({"POST /once": Reply(json={"done": True}, delay_s=1.5)}) as srv:
        plan = {"name": "duplicate", "steps": [
            {"id": "call", "skill": "http.request", "timeout_s": STEP_TIMEOUT_S,
             "args": {"method": "POST", "url": srv.url("/once"), "json": {"x": 1}}},
            {"id": "after", "skill": "json.transform", "args": {"input": {"$ref": "steps.call.output.json"},
                                                                "expr": "done"}}]}
        run_id = _submit(ctx, plan)
        dup = execute.apply_async(args=[str(run_id), 0], queue=aos_env["AOS_STEP_QUEUE"])

        run = wait_for_run(run_id, timeout=30)
        assert run.status == "succeeded", (run.error_code, run.error_message)
        # The duplicate must have finished too (it waits out the lease, then sees the checkpoint),
        # or "executed once" would only mean "not yet executed twice".
        done = f"aos.steps.execute[{dup.id}] succeeded"
        _wait(lambda: done in worker.tail(200_000) or done in second_worker.tail(200_000), 20,
              "the duplicate delivery to finish")
        assert len(srv.requests) == 1, [r.headers for r in srv.requests]
    cps = [cp for cp in _checkpoints(run_id) if cp.step_index == 0]
    assert [(cp.attempt, cp.status) for cp in cps] == [(1, "succeeded")]
    assert _successes_per_step(run_id) == {0: 1, 1: 1}


# --------------------------------------------------------------------------- 4. budgets


def test_two_workers_sharing_one_budget_never_exceed_it(tenant, aos_env):
    """Four OS processes reserve 0.01 USD at once on one tenant's day limited to 0.50 USD, with the
    statement every costed step's claim runs: exactly 50 win."""
    from aos.db.models import Tenant, TenantDailySpend
    from aos.runtime import budget

    ctx, _ = tenant
    max_cost = Decimal("0.50")
    with session_scope() as s:
        s.get(Tenant, ctx.tenant_id).daily_budget_usd = max_cost
    won = _race(_reserve_worker, lambda _i: (str(ctx.tenant_id), 40), procs=4)
    expected = math.floor(max_cost / Decimal("0.01"))
    assert sum(won) == expected, won
    assert sum(1 for n in won if n > 0) >= 2, f"no real race happened: {won}"
    with session_scope() as s:
        day = s.get(TenantDailySpend, (ctx.tenant_id, budget.today()))
        assert day.reserved_cost_usd == Decimal("0.01") * sum(won) == max_cost


def test_racing_claims_of_one_step_leave_one_lease_and_one_reservation(tenant, aos_env):
    """Four OS processes claim the same step at once: one holds the lease, the run counts one started
    step, one reservation and one open attempt, delivered once."""
    from aos.services.runs import submit_run

    ctx, _ = tenant
    run_id = submit_run(ctx, {"name": "claim-race", "budget": {"max_cost_usd": 1.0},
                              "steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]},
                        None)
    won = _race(_claim_worker, lambda i: (str(run_id), f"p{i}"), procs=4)
    assert sorted(won) == [False, False, False, True], won
    with session_scope() as s:
        run = s.get(Run, run_id)
        assert (run.steps_started, run.reserved_cost_usd, run.lease_owner.startswith("race:")) == \
            (1, Decimal("0.01"), True)
        assert (run.attempt, run.attempt_open, run.attempt_deliveries) == (1, True, 1)
        run.status = "cancelled"  # nobody else may execute it: its lease owner was this test


def test_a_step_beyond_max_steps_never_starts(worker, tenant):
    """max_steps 3 on a 3-step plan whose first step needs a retry: the retry is the third step that
    starts, so the run fails with BUDGET_EXCEEDED at step 3, whose skill is never called. (A plan with
    more steps than max_steps is refused at submission; retries are what the engine must count.)"""
    ctx, _ = tenant
    calls = {"1": 0}

    def first_fails_once(req):
        calls["1"] += 1
        return Reply(status=503, json={"busy": True}) if calls["1"] == 1 else Reply(json={"ok": True})

    with serve_http({"/one": first_fails_once, "/n": Reply(json={"ok": True})}) as srv:
        plan = {"name": "max-steps", "budget": {"max_steps": 3}, "steps": [
            {"id": "one", "skill": "http.request", "args": {"url": srv.url("/one?step=1")},
             "retry": {"max_attempts": 3, "backoff_s": 0.1, "backoff_max_s": 0.2}},
            {"id": "two", "skill": "http.request", "args": {"url": srv.url("/n?step=2")}},
            {"id": "three", "skill": "http.request", "args": {"url": srv.url("/n?step=3")}}]}
        run_id = _submit(ctx, plan)
        run = wait_for_run(run_id, timeout=30)
        assert [r.query["step"] for r in srv.requests] == [["1"], ["1"], ["2"]]
    assert run.status == "failed" and run.error_code == "BUDGET_EXCEEDED", (run.status, run.error_code)
    assert _successes_per_step(run_id) == {0: 1, 1: 1}
    # the refused step never started: no attempt row, and it is not counted as started
    assert [cp for cp in _checkpoints(run_id) if cp.step_index == 2] == []
    assert run.steps_started == 3
    assert not [e for e in _events(run_id, "step.started") if e.step_id == "three"]
    exceeded = _events(run_id, "budget.exceeded")
    assert [e.step_id for e in exceeded] == ["three"] and "max_steps 3" in exceeded[0].data["message"]


# --------------------------------------------------------------------------- 5. retry schedule


def test_retry_schedule_is_reproducible_and_exponential():
    policy = RetryPolicy(max_attempts=10, backoff_s=0.5, backoff_max_s=8.0)
    cap = 900.0
    assert [backoff_ceiling(policy, a, cap) for a in range(1, 9)] == [0.5, 1, 2, 4, 8, 8, 8, 8]
    # the process-wide cap (AOS_MAX_COUNTDOWN_S) wins over a larger backoff_max_s
    assert [backoff_ceiling(policy, a, 3.0) for a in range(1, 7)] == [0.5, 1, 2, 3, 3, 3]

    runs = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"aos-run-{i}")) for i in range(200)]
    schedule = {(r, a): retry_countdown(r, "fetch", a, policy, cap_s=cap) for r in runs[:20] for a in range(1, 9)}
    again = {(r, a): retry_countdown(r, "fetch", a, policy, cap_s=cap) for r in runs[:20] for a in range(1, 9)}
    assert schedule == again
    for (_, a), value in schedule.items():
        assert 0.0 <= value <= backoff_ceiling(policy, a, cap)
    one_run = [schedule[(runs[0], a)] for a in range(1, 9)]
    assert len(set(one_run)) == len(one_run), one_run
    one_attempt = [schedule[(r, 5)] for r in runs[:20]]
    assert len(set(one_attempt)) == len(one_attempt), one_attempt
    assert retry_countdown(runs[0], "fetch", 3, policy, cap_s=cap) != retry_countdown(runs[0], "other", 3, policy,
                                                                                        cap_s=cap)
    # full jitter: spread over [0, ceiling], not bunched near it
    spread = [retry_countdown(r, "fetch", 3, policy, cap_s=cap) for r in runs]
    assert min(spread) < 0.2 and max(spread) > 1.8 and 0.8 < sum(spread) / len(spread) < 1.2

    # another interpreter (its own hash seed) computes the very same schedule
    code = ("import json, sys; from aos.runtime.backoff import retry_countdown; from aos.skills.base import "
            "RetryPolicy; p = RetryPolicy(max_attempts=10, backoff_s=0.5, backoff_max_s=8.0); "
            "runs = json.loads(sys.argv[1]); "
            "print(json.dumps([retry_countdown(r, 'fetch', a, p, cap_s=900.0) for r in runs for a in range(1, 9)]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(runs[:20])], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONHASHSEED": "random"}, check=True).stdout
    assert json.loads(out) == [schedule[(r, a)] for r in runs[:20] for a in range(1, 9)]


def test_a_503_twice_is_retried_on_the_seeded_schedule_and_succeeds(worker, tenant, aos_env):
    ctx, _ = tenant
    lock = threading.Lock()
    arrivals: list[float] = []

    def flaky(_req: RecordedRequest) -> Reply:
        with lock:
            arrivals.append(time.monotonic())
            n = len(arrivals)
        return Reply(status=503, body="busy") if n <= 2 else Reply(json={"ok": True})

    retry = {"max_attempts": 3, "backoff_s": 0.2, "backoff_max_s": 1}
    with serve_http({"GET /flaky": flaky}) as srv:
        plan = {"name": "flaky", "steps": [{"id": "fetch", "skill": "http.request", "retry": retry,
                                            "args": {"url": srv.url("/flaky")}}]}
        run_id = _submit(ctx, plan)
        run = wait_for_run(run_id, timeout=30)
    assert run.status == "succeeded", (run.error_code, run.error_message)
    assert [(cp.attempt, cp.status, cp.error_code) for cp in _checkpoints(run_id)] == [
        (1, "failed", "HTTP_SERVICE_UNAVAILABLE"), (2, "failed", "HTTP_SERVICE_UNAVAILABLE"),
        (3, "succeeded", None)]
    policy = RetryPolicy(max_attempts=3, backoff_s=0.2, backoff_max_s=1.0)
    cap = float(aos_env["AOS_MAX_COUNTDOWN_S"])
    retrying = _events(run_id, "step.retrying")
    assert [(e.data["attempt"], e.data["code"], e.data["countdown_s"]) for e in retrying] == [
        (a, "HTTP_SERVICE_UNAVAILABLE", retry_countdown(str(run_id), "fetch", a, policy, cap_s=cap)) for a in (1, 2)]
    # the countdown was really waited: each attempt came no sooner than its countdown after the previous one
    assert len(arrivals) == 3
    for i, e in enumerate(retrying):
        assert arrivals[i + 1] - arrivals[i] >= e.data["countdown_s"] - 0.05, (arrivals, e.data)


# --------------------------------------------------------------------------- 6. crashing skills


class _Crashing(Skill):
    """A third-party-style skill with a bug in it."""

    name = "thirdparty.crash"
    input_schema = {"type": "object", "required": ["how"], "properties": {"how": {"type": "string"}}}

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        how = args["how"]
        if how == "divide":
            return SkillResult(output=1 / len(args.get("items", [])))
        if how == "lookup":
            return SkillResult(output={}["missing"])
        if how == "add":
            return SkillResult(output=args.get("nothing") + 1)
        if how == "parse":
            return SkillResult(output=json.loads("{not json"))
        if how == "decode":
            return SkillResult(output=b"\xff\xfe\xfa".decode("utf-8"))
        raise _PluginBug("the plugin's own exception type")


class _PluginBug(Exception):
    pass


@pytest.mark.parametrize(("how", "code", "exc"), [
    ("divide", "ARITHMETIC_ERROR", "ZeroDivisionError"),
    ("lookup", "DATA_KEY_MISSING", "KeyError"),
    ("add", "DATA_TYPE_ERROR", "TypeError"),
    ("parse", "JSON_DECODE_ERROR", "JSONDecodeError"),
    ("decode", "ENCODING_ERROR", "UnicodeDecodeError"),
    ("other", "SKILL_CRASHED", "_PluginBug"),
])
def test_unexpected_exception_in_a_skill_is_classified_not_unknown(how, code, exc):
    from aos.config import get_settings

    ctx = SkillContext(run_id=str(uuid.uuid4()), step_id="s", attempt=1, tenant_id=str(uuid.uuid4()),
                       settings=get_settings())
    outcome, raw = invoke_skill(_Crashing(), {"how": how}, ctx)
    assert not outcome.ok and raw is None
    err = outcome.error
    assert err is not None and err.code == code
    assert err.code in CATALOG
    entry = CATALOG.get(err.code)
    assert (err.category, err.retryable) == (str(entry.category), entry.retryable)
    assert err.message.startswith(f"{exc}:") and err.details == {"exception": exc}
    assert outcome.timing.duration_ms is not None
