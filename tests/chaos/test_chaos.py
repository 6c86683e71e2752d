"""Chaos: 200 runs of mixed plans in flight while a worker is SIGKILLed, the broker restarts, or Postgres
restarts. Afterwards every run is final within a bound and ends as its plan dictates, none is lost, no
step has two successful checkpoints, every HTTP side effect happened exactly once per step, and each
run's final event reached the tenant's webhook receiver under one AOS-Webhook-Id.

Each test owns its whole deployment (tests/chaos/stack.py): a private Redis, its own database (a
private Postgres server for the Postgres restart), the API, beat, a worker for beat's jobs and two
step workers of two processes each, all real processes started through the `aos` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from aos.services.webhooks import verify_signature
from tests.chaos.stack import ChaosStack
from tests.chaos.workload import KINDS, IdempotentService, workload
from tests.support.worker import pid_of

pytestmark = pytest.mark.chaos

N_RUNS = 200
FINAL_WITHIN_S = 120      # every run is final this long after the fault at the latest
TRIGGER_FINAL = 25        # the fault lands once this many runs are final (and HTTP steps are in flight)


def _run_with_fault(stack: ChaosStack, service: IdempotentService, fault: Callable[[ChaosStack], Any], *,
                    during_submission: bool, n_runs: int = N_RUNS) -> tuple[dict[str, str], dict[str, Any]]:
    """Submit the workload, inject ``fault`` while runs are in flight (and, ``during_submission``, while
    the API is still accepting runs), wait until every run is final."""
    plans = workload(n_runs, service.url())
    t0 = time.monotonic()
    submitted = stack.submit_in_background([plan for _, plan in plans])
    if not during_submission:
        submitted.result(timeout=180)
    stack.wait_until(lambda: stack.final_count() >= TRIGGER_FINAL and stack.http_steps_in_flight(), 120,
                     "runs in flight with HTTP steps executing", interval=0.05)
    before = stack.final_count()
    t_fault = time.monotonic()
    detail = fault(stack)
    ids = submitted.result(timeout=180)  # every POST got its 201, also those made during the fault
    kinds = dict(zip(ids, (kind for kind, _ in plans), strict=True))
    assert len(set(ids)) == n_runs
    try:
        stack.wait_until(lambda: stack.final_count() == n_runs, FINAL_WITHIN_S,
                         f"all {n_runs} runs to be final after the fault", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstuck runs: {_stuck_runs(stack)}\n{stack.logs(600)}") from None
    # and every outbox row (run enqueues, webhooks) delivered: nothing pending, nothing dead
    stack.wait_until(lambda: stack.try_query("SELECT count(*) FROM outbox WHERE tenant_id = :t AND "
                                             "status <> 'delivered'", t=stack.tenant_id) == [(0,)],
                     60, "every outbox row to be delivered")
    stats = {"final_before_fault": before, "fault": detail, "submit_to_fault_s": round(t_fault - t0, 1),
             "recovery_s": round(time.monotonic() - t_fault, 1), **_recovery_stats(stack)}
    print(f"\nchaos stats: {stats}")  # visible with -s: how hard the fault hit and how recovery went
    return kinds, stats


def _stuck_runs(stack: ChaosStack, n: int = 5) -> list[dict[str, Any]]:
    """What a run that is not final is waiting for: its row and its last events."""
    out = []
    for row in stack.query(
            "SELECT id, status, next_step, version, lease_owner, lease_expires_at, wake_at, updated_at, now() "
            "FROM runs WHERE tenant_id = :t AND status NOT IN ('succeeded', 'failed', 'cancelled', "
            "'dead_lettered') LIMIT :n", t=stack.tenant_id, n=n):
        events = stack.query("SELECT type, step_id, data, created_at FROM run_events WHERE run_id = :r "
                             "ORDER BY id DESC LIMIT 6", r=row[0])
        cps = stack.query("SELECT step_index, attempt, status, worker, deliveries, started_at FROM checkpoints "
                          "WHERE run_id = :r ORDER BY id", r=row[0])
        out.append({"run": dict(row._mapping), "events": [tuple(e) for e in events], "checkpoints": [tuple(c) for c in cps]})
    return out


def _recovery_stats(stack: ChaosStack) -> dict[str, Any]:
    rows = stack.query(
        "SELECT type, coalesce(data->>'reason', ''), count(*) FROM run_events WHERE tenant_id = :t "
        "AND type IN ('step.redelivered', 'run.resumed', 'step.retrying') GROUP BY 1, 2", t=stack.tenant_id)
    stats: dict[str, Any] = {f"{t}{':' + r if r else ''}": n for t, r, n in rows}
    # the run that finished last, and its timeline (seconds since it was created): where recovery waited
    last = stack.query("SELECT id, created_at FROM runs WHERE tenant_id = :t ORDER BY finished_at DESC LIMIT 1",
                       t=stack.tenant_id)[0]
    stats["last_run"] = [(round((at - last[1]).total_seconds(), 1), type_, step) for type_, step, at in stack.query(
        "SELECT type, step_id, created_at FROM run_events WHERE run_id = :r ORDER BY id", r=last[0])]
    return stats


def _assert_outcomes(stack: ChaosStack, service: IdempotentService, kinds: dict[str, str]) -> None:
    t = stack.tenant_id
    # none lost: every accepted run is there, and nothing else
    runs = {r[0]: r for r in stack.query(
        "SELECT id::text, status, error_code, step_count FROM runs WHERE tenant_id = :t", t=t)}
    assert set(runs) == set(kinds), (len(runs), len(kinds))

    # every run ended as its plan dictates
    wrong = []
    for rid, kind in kinds.items():
        exp = KINDS[kind][1]
        _, status, code, _ = runs[rid]
        if (status, code) != (exp.status, exp.error_code):
            wrong.append((rid, kind, status, code))
    assert not wrong, f"{len(wrong)} runs ended wrongly, e.g. {wrong[:5]}"

    # no step has two successful checkpoints (the SQL check, over the whole database)
    doubles = stack.query(
        "SELECT run_id, step_index, count(*) FROM checkpoints WHERE status IN ('succeeded', 'skipped') "
        "GROUP BY run_id, step_index HAVING count(*) > 1")
    assert doubles == [], doubles

    # a succeeded run has one successful checkpoint per step; skipped and fallback steps are the plan's
    good: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    for rid, step_id, attempt, status in stack.query(
            "SELECT run_id::text, step_id, attempt, status FROM checkpoints WHERE tenant_id = :t "
            "AND status IN ('succeeded', 'skipped')", t=t):
        good[rid][step_id] = (attempt, status)
    fallbacks = {(r, s) for r, s in stack.query(
        "SELECT run_id::text, step_id FROM run_events WHERE tenant_id = :t AND type = 'step.fallback'", t=t)}
    for rid, kind in kinds.items():
        exp = KINDS[kind][1]
        if exp.status != "succeeded":
            continue
        assert len(good[rid]) == runs[rid][3], (rid, kind, good[rid])
        assert sorted(s for s, (_, st) in good[rid].items() if st == "skipped") == sorted(exp.skipped), (rid, kind)
        assert {s for r, s in fallbacks if r == rid} == set(exp.fallback), (rid, kind)

    # side effects: the service applied each Idempotency-Key at most once ...
    assert service.applied and max(service.applied.values()) == 1, service.applied.most_common(3)
    # ... and exactly one key per step that must charge: the key of the attempt that succeeded
    applied_steps: Counter[tuple[str, str]] = Counter()
    for key in service.applied:
        rid, step_id, attempt = key.rsplit(":", 2)
        applied_steps[(rid, step_id)] += 1
        assert rid in kinds, f"a charge for a run the test did not submit: {key}"
        exp = KINDS[kinds[rid]][1]
        assert step_id in exp.applied, (key, kinds[rid])
        assert good[rid].get(step_id, (None,))[0] == int(attempt), (key, good[rid])
    must = {(rid, s) for rid, kind in kinds.items() for s in KINDS[kind][1].applied}
    assert set(applied_steps) == must, (len(applied_steps), len(must))
    assert all(n == 1 for n in applied_steps.values()), applied_steps.most_common(3)
    # every delivery of one key carried the same request
    for key, reqs in service.requests_by_key().items():
        assert len({r.body for r in reqs}) == 1, key


def _assert_webhooks(stack: ChaosStack, service: IdempotentService, kinds: dict[str, str]) -> None:
    """Each run's final event reached the receiver, under exactly one AOS-Webhook-Id however often it was
    delivered (retries, redeliveries after the fault), with the same signed body every time."""
    ids_by_event: dict[tuple[str, str], set[str]] = defaultdict(set)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for hook in list(service.webhooks):
        doc = json.loads(hook.body)
        assert (doc["id"], doc["type"]) == (hook.id, hook.event), hook
        assert verify_signature(stack.webhook_secret, hook.signature, hook.body, tolerance_s=600), hook
        ids_by_event[(doc["data"]["run_id"], hook.event)].add(hook.id)
        bodies[hook.id].add(hook.body)
    twice = {k: v for k, v in ids_by_event.items() if len(v) != 1}
    assert not twice, f"events delivered under several webhook ids: {list(twice.items())[:5]}"
    assert all(len(b) == 1 for b in bodies.values())
    # a dead-lettered run announces itself as run.failed (docs/webhooks.md)
    expected = {(rid, "run.failed" if KINDS[kind][1].status == "dead_lettered" else f"run.{KINDS[kind][1].status}")
                for rid, kind in kinds.items()}
    # a failed run's recovery suggestion follows its failure (looked up afterwards, off the step's path): it may
    # still be on its way, but it is never sent for a run that did not fail, nor twice
    final = {k for k in ids_by_event if k[1] != "run.recovery"}
    assert final == expected, (len(final), len(expected), sorted(final ^ expected)[:5])
    failed = {rid for rid, kind in kinds.items() if KINDS[kind][1].status in ("failed", "dead_lettered")}
    assert {rid for rid, event in ids_by_event if event == "run.recovery"} <= failed
    retried = sum(1 for h in service.webhooks if h.attempt != "1")
    assert retried >= 1, "no webhook was retried: the receiver's 503s did not happen"


def _assert_processes_alive(stack: ChaosStack) -> None:
    dead = [w.name for w in stack.workers if w.proc is not None and w.proc.poll() is not None and not
            getattr(w, "killed_by_test", False)]
    dead += [s.name for s in (stack.api, stack.beat, stack.ops) if s is not None and not s.alive]
    assert not dead, f"processes died: {dead}\n{stack.logs(2000)}"


# --------------------------------------------------------------------------- the faults


def _kill_a_whole_worker(stack: ChaosStack) -> str:
    """SIGKILL a worker's parent and pool while one of its processes executes an HTTP step; start a
    new worker in its place (what a supervisor does)."""
    doomed = stack.workers[0]
    assert doomed.proc is not None

    def busy() -> list[tuple[str, str]]:
        pids = set(doomed.child_pids())
        return [(r, w) for r, w in stack.http_steps_in_flight() if w and pid_of(w) in pids]

    victims = stack.wait_until(busy, 30, "an HTTP step in flight on the doomed worker", interval=0.02)
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    doomed.killed_by_test = True  # type: ignore[attr-defined]
    stack.start_worker()
    return f"killed {doomed.name} during {len(victims)} HTTP step(s)"


def _restart_the_broker(stack: ChaosStack) -> dict[str, Any]:
    queue = stack.env["AOS_STEP_QUEUE"]
    queued = stack.broker.llen(queue)
    stack.broker.stop()
    in_flight = len(stack.http_steps_in_flight())
    time.sleep(1.5)
    stack.broker.start()
    return {"down_s": 1.5, "http_steps_in_flight": in_flight, "queued_before": queued,
            "queued_after": stack.broker.llen(queue)}


def _restart_postgres(stack: ChaosStack) -> str:
    assert stack.postgres is not None
    in_flight = len(stack.http_steps_in_flight())  # just before: the database answers no query while down
    stack.postgres.stop()
    time.sleep(2)
    stack.postgres.start()
    return f"postgres down 2 s with {in_flight} HTTP step(s) in flight"


# --------------------------------------------------------------------------- the tests


def test_a_worker_sigkilled_mid_step_loses_no_run_and_applies_no_effect_twice(make_stack, service):
    stack = make_stack()
    kinds, stats = _run_with_fault(stack, service, _kill_a_whole_worker, during_submission=True)
    _assert_outcomes(stack, service, kinds)
    _assert_webhooks(stack, service, kinds)
    _assert_processes_alive(stack)
    # the killed worker's runs came back through the reaper (Redis would redeliver only after its
    # visibility timeout of 2 h)
    assert stats.get("run.resumed:reaper", 0) >= 1, stats


@pytest.mark.parametrize(("appendonly", "n_runs", "grace"), [(True, N_RUNS, "30"), (False, 80, "10")],
                         ids=["aof", "no-persistence"])
def test_a_broker_restart_loses_no_run_and_kills_no_worker(make_stack, service, appendonly, n_runs, grace):
    """With appendonly (the required broker configuration) the queued step messages survive the restart.
    Without persistence Redis comes back empty: every queued message is gone, and the runs behind them
    are re-published by the reaper once silent past AOS_REAPER_GRACE_S — slower, still nothing lost.
    (The misconfigured broker only documents that behaviour: fewer runs, and a shorter reaper grace
    that their shorter queue allows, show it as well.)"""
    stack = make_stack(appendonly=appendonly, AOS_REAPER_GRACE_S=grace)
    kinds, stats = _run_with_fault(stack, service, _restart_the_broker, during_submission=False, n_runs=n_runs)
    _assert_outcomes(stack, service, kinds)
    _assert_webhooks(stack, service, kinds)
    _assert_processes_alive(stack)
    lost = [w.name for w in stack.workers if "Connection to broker lost" not in w.tail(2_000_000)]
    assert not lost, f"the restart did not reach workers {lost}"
    fault = stats["fault"]
    assert fault["queued_before"] >= 20, f"the fault landed too late to test anything: {fault}"
    if appendonly:  # the queue came back (less what workers took just before the stop and just after)
        assert fault["queued_after"] >= fault["queued_before"] - 10, fault
    else:  # the queue came back empty: the reaper re-published every run whose message was lost
        assert fault["queued_after"] <= 10, fault
        assert stats.get("run.resumed:reaper", 0) >= fault["queued_before"] - 10, stats


def test_a_postgres_restart_loses_no_run_and_writes_no_checkpoint_twice(make_stack, service):
    stack = make_stack(private_postgres=True)
    kinds, _ = _run_with_fault(stack, service, _restart_postgres, during_submission=False)
    _assert_outcomes(stack, service, kinds)
    _assert_webhooks(stack, service, kinds)
    _assert_processes_alive(stack)
