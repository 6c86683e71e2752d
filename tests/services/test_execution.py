"""Step execution through a real worker: recovery modes, cancel, resume, budget warnings, the reaper."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import func, select, update

from aos.db.models import Checkpoint, OutboxMessage, Run
from aos.db.session import session_scope
from aos.services.runs import cancel_run, get_run, get_timeline, resume_run, submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def _http(url: str, **extra):
    return {"skill": "http.request", "args": {"method": "GET", "url": url}, **extra}


def _events(ctx, run_id) -> list[dict]:
    return get_timeline(ctx, run_id)


def _checkpoints(run_id, step_index) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Checkpoint).where(
            Checkpoint.run_id == run_id, Checkpoint.step_index == step_index))


def test_skip_records_the_error_and_the_run_goes_on(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/missing": Reply(404, json={"error": "nope"})}) as srv:
        plan = {"steps": [
            {"id": "fetch", **_http(srv.url("/missing")), "on_error": {"mode": "SKIP"}},
            {"id": "after", "skill": "json.transform",
             "args": {"input": {"v": {"$ref": "steps.fetch.output"}}, "expr": "v"}}]}
        run_id = submit_run(ctx, plan, PUB)
        wait_for_run(run_id)
    run = get_run(ctx, run_id)
    assert run["status"] == "succeeded"
    fetch, after = run["steps"]
    assert fetch["status"] == "skipped" and fetch["error"]["code"] == "HTTP_NOT_FOUND"
    assert after["status"] == "succeeded" and after["output"] is None
    assert "step.skipped" in [e["type"] for e in _events(ctx, run_id)]


def test_non_retryable_failure_aborts_at_once_with_its_code_and_recovery(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/missing": Reply(404)}) as srv:
        plan = {"steps": [
            {"id": "fetch", **_http(srv.url("/missing")), "retry": {"max_attempts": 5, "backoff_s": 0.1}},
            {"id": "never", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
        run_id = submit_run(ctx, plan, PUB)
        wait_for_run(run_id)
        assert len(srv.requests) == 1  # the catalog says 404 is not retryable: no retry
    run = get_run(ctx, run_id)
    assert run["status"] == "failed" and run["error"]["code"] == "HTTP_NOT_FOUND"
    assert run["steps"][1]["status"] == "not_run" and _checkpoints(run_id, 1) == 0
    failed = [e for e in _events(ctx, run_id) if e["type"] == "run.failed"][0]
    assert failed["data"]["code"] == "HTTP_NOT_FOUND" and failed["data"]["recovery"] == "ABORT"


def test_fallback_runs_the_alternative_after_the_last_attempt(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/flaky": Reply(500)}) as srv:
        plan = {"steps": [
            {"id": "price", **_http(srv.url("/flaky")), "retry": {"max_attempts": 2, "backoff_s": 0.05},
             "on_error": {"mode": "FALLBACK",
                          "fallback": {"skill": "json.transform", "args": {"input": {"p": 42}, "expr": "p"}}}}]}
        run_id = submit_run(ctx, plan, PUB)
        wait_for_run(run_id)
        assert len(srv.requests) == 2
    run = get_run(ctx, run_id)
    assert run["status"] == "succeeded" and run["steps"][0]["output"] == 42
    types = [e["type"] for e in _events(ctx, run_id)]
    assert "step.retrying" in types and "step.fallback" in types


def test_retry_after_hint_is_honoured(tenant, worker):
    ctx, _ = tenant
    replies = iter([Reply(429, headers={"Retry-After": "1"}), Reply(200, json={"ok": True})])
    with serve_http({"/limited": lambda req: next(replies)}) as srv:
        run_id = submit_run(ctx, {"steps": [{"id": "call", **_http(srv.url("/limited"))}]}, PUB)
        wait_for_run(run_id)
        assert len(srv.requests) == 2
    retrying = [e for e in _events(ctx, run_id) if e["type"] == "step.retrying"]
    assert retrying[0]["data"]["code"] == "RATE_LIMITED" and retrying[0]["data"]["countdown_s"] == 1.0
    assert get_run(ctx, run_id)["status"] == "succeeded"


def test_cancel_stops_the_run_before_its_next_step(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/slow": Reply(200, json={}, delay_s=2.0)}) as srv:
        plan = {"steps": [{"id": "slow", **_http(srv.url("/slow"))},
                          {"id": "next", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}
        run_id = submit_run(ctx, plan, PUB)
        deadline = time.monotonic() + 20
        while not srv.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.requests, "the first step never started"
        view = cancel_run(ctx, run_id, PUB)
        assert view["status"] == "cancelled"
        time.sleep(3.5)  # the slow step finishes meanwhile: it must not advance a cancelled run
    run = get_run(ctx, run_id)
    assert run["status"] == "cancelled" and run["error"]["code"] == "RUN_CANCELLED"
    assert _checkpoints(run_id, 1) == 0


def test_resume_continues_from_the_first_unfinished_step(tenant, worker):
    ctx, _ = tenant
    state = {"up": False}
    with serve_http({"/dep": lambda req: Reply(200, json={"v": 7}) if state["up"] else Reply(404)}) as srv:
        plan = {"steps": [
            {"id": "first", "skill": "json.transform", "args": {"input": {"a": 1}, "expr": "a"}},
            {"id": "dep", **_http(srv.url("/dep"))},
            {"id": "last", "skill": "json.transform", "args": {"input": {"$ref": "steps.dep.output.json"},
                                                               "expr": "v"}}]}
        run_id = submit_run(ctx, plan, PUB)
        assert wait_for_run(run_id).status == "failed"
        state["up"] = True
        assert resume_run(ctx, run_id, PUB)["status"] in ("queued", "running", "succeeded")
        wait_for_run(run_id, statuses=("succeeded", "failed"))
    run = get_run(ctx, run_id)
    assert run["status"] == "succeeded" and run["steps"][2]["output"] == 7
    assert _checkpoints(run_id, 0) == 1  # the finished step was not executed again
    assert run["steps"][1]["attempts"] == 2
    assert "run.resumed" in [e["type"] for e in _events(ctx, run_id)]


def test_budget_warning_is_recorded_once_at_eighty_percent(tenant, worker):
    ctx, _ = tenant
    step = {"skill": "json.transform", "args": {"input": 1, "expr": "@"}}
    plan = {"budget": {"max_steps": 5}, "steps": [{"id": f"s{i}", **step} for i in range(4)]}
    run_id = submit_run(ctx, plan, PUB)
    wait_for_run(run_id)
    warnings = [e for e in _events(ctx, run_id) if e["type"] == "budget.warning"]
    assert len(warnings) == 1 and warnings[0]["data"]["ratios"] == {"steps": 0.8}
    with session_scope() as s:  # a webhook outbox row announces it too
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.topic == "budget.warning", OutboxMessage.payload["run_id"].astext == str(run_id))) == 1


def test_reaper_requeues_a_silent_run_and_the_run_finishes(tenant, worker, settings_env):
    from aos.services.outbox import drain_outbox
    from aos.services.reaper import reap_silent_runs

    ctx, _ = tenant
    plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 3, "expr": "@"}}]}
    run_id = submit_run(ctx, plan, None)  # accepted, never published: as if its message was lost
    with session_scope() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.payload["run_id"].astext == str(run_id))
                  .values(status="delivered"))
        s.execute(update(Run).where(Run.id == run_id).values(updated_at=func.now() - func.make_interval(0, 0, 0, 0, 1)))
    settings_env(AOS_REAPER_GRACE_S="30")
    assert reap_silent_runs() >= 1
    assert drain_outbox(PUB) >= 1
    assert wait_for_run(run_id).status == "succeeded"
    assert "run.resumed" in [e["type"] for e in _events(ctx, run_id)]


def test_unknown_run_id_message_is_ignored(aos_env):
    from aos.services.execution import execute_step

    assert execute_step(str(uuid.uuid4()), 0, "w").action == "stop"


def test_soft_timeout_stops_a_step_that_outlives_its_timeout(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/slow": Reply(200, json={}, delay_s=8.0)}) as srv:
        # the skill itself would wait 30 s; the step's 1 s soft time limit (Celery) interrupts it
        plan = {"steps": [{"id": "slow", "skill": "http.request",
                           "args": {"url": srv.url("/slow"), "timeout_s": 30},
                           "timeout_s": 1, "retry": {"max_attempts": 1}}]}
        started = time.monotonic()
        run_id = submit_run(ctx, plan, PUB)
        run = wait_for_run(run_id, timeout=30)
        elapsed = time.monotonic() - started
    assert run.status == "dead_lettered" and run.error_code == "STEP_TIMEOUT", (run.status, run.error_code)
    assert elapsed < 7, elapsed
