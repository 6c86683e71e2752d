"""Waiting runs through a real worker: signal.wait, human.approve, ESCALATE, deadlines, bad signals."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from aos.config import get_settings
from aos.db.models import Checkpoint, OutboxMessage, Run, RunWait
from aos.db.session import session_scope
from aos.errors import AosError
from aos.services.runs import cancel_run, get_run, get_timeline, resume_run, submit_run
from aos.services.signals import deliver_signal, expire_waits, list_signals
from aos.tasks.app import celery_config
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def _types(ctx, run_id) -> list[str]:
    return [e["type"] for e in get_timeline(ctx, run_id)]


def _wait_plan(**wait_args):
    return {"steps": [
        {"id": "ask", "skill": "signal.wait", "args": {"signal": "answer", "reason": "need a number", **wait_args}},
        {"id": "use", "skill": "json.transform", "args": {"input": {"$ref": "steps.ask.output"}, "expr": "n"}}]}


def _waiting(run_id, timeout: float = 30) -> Run:
    return wait_for_run(run_id, timeout, statuses=("waiting", "succeeded", "failed", "cancelled", "dead_lettered"))


def test_a_signal_wait_parks_the_run_and_its_payload_becomes_the_step_output(tenant, worker):
    ctx, _ = tenant
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    run_id = submit_run(ctx, _wait_plan(schema=schema, timeout_s=600), PUB)
    assert _waiting(run_id).status == "waiting"
    view = get_run(ctx, run_id)
    assert view["waiting"]["signal"] == "answer" and view["waiting"]["reason"] == "need a number"
    assert view["waiting"]["schema"] == schema and view["waiting"]["deadline"] is not None
    assert view["steps"][0]["status"] == "waiting"
    with session_scope() as s:  # no worker holds it: no lease, and no step message left for it
        run = s.get(Run, run_id)
        assert run.lease_owner is None and run.attempt_open

    answer = deliver_signal(ctx, run_id, "answer", {"n": 42}, "k-1", PUB)
    assert answer["duplicate"] is False and answer["step_id"] == "ask"
    run = wait_for_run(run_id)
    assert run.status == "succeeded"
    view = get_run(ctx, run_id)
    assert view["steps"][0]["output"] == {"n": 42} and view["steps"][1]["output"] == 42
    assert view["steps"][0]["attempts"] == 1 and view["waiting"] is None
    types = _types(ctx, run_id)
    assert types.index("run.waiting") < types.index("signal.received") < types.index("run.succeeded")
    assert "step.redelivered" not in types  # the attempt went on, it was not redelivered
    with session_scope() as s:  # run.waiting leaves as a webhook too
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.topic == "run.waiting", OutboxMessage.payload["run_id"].astext == str(run_id))) == 1

    # the same key again: answered as the first time, nothing changes
    again = deliver_signal(ctx, run_id, "answer", {"n": 42}, "k-1", PUB)
    assert again["duplicate"] is True and again["status"] == "succeeded"
    with pytest.raises(AosError) as exc:  # the key with another payload
        deliver_signal(ctx, run_id, "answer", {"n": 43}, "k-1", PUB)
    assert exc.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert [w["status"] for w in list_signals(ctx, run_id)] == ["signalled"]


def test_bad_signals_are_refused_and_change_nothing(tenant, worker):
    ctx, _ = tenant
    other_ctx = None
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    run_id = submit_run(ctx, _wait_plan(schema=schema), PUB)
    _waiting(run_id)
    cases = [("other", {"n": 1}, "SIGNAL_NOT_AWAITED"), ("answer", {"n": "x"}, "SIGNAL_PAYLOAD_INVALID"),
             ("answer", ["n"], "SIGNAL_PAYLOAD_INVALID"), ("no way!", {"n": 1}, "SIGNAL_NOT_AWAITED")]
    for name, payload, code in cases:
        with pytest.raises(AosError) as exc:
            deliver_signal(ctx, run_id, name, payload, "k", PUB)
        assert exc.value.code == code, (name, payload)
    with pytest.raises(AosError) as exc:
        deliver_signal(ctx, run_id, "answer", {"n": "x"}, None, PUB)
    assert exc.value.problems[0]["path"] == "$.data.n"
    assert get_run(ctx, run_id)["status"] == "waiting"
    assert [w["status"] for w in list_signals(ctx, run_id)] == ["waiting"]
    del other_ctx

    done = submit_run(ctx, {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]},
                      PUB)
    wait_for_run(done)
    with pytest.raises(AosError) as exc:
        deliver_signal(ctx, done, "answer", {"n": 1}, None, PUB)
    assert exc.value.code == "RUN_NOT_WAITING"


def test_another_tenants_run_is_not_found(tenant, worker):
    ctx, _ = tenant
    from aos.services.tenancy import authenticate, create_api_key, create_tenant

    with session_scope() as s:
        t = create_tenant(s, f"other-{time.monotonic_ns()}")
        key, _ = create_api_key(s, t, "test", ("runs:read", "runs:write"))
        other = authenticate(s, key)
    run_id = submit_run(ctx, _wait_plan(), PUB)
    _waiting(run_id)
    with pytest.raises(AosError) as exc:
        deliver_signal(other, run_id, "answer", {"n": 1}, None, PUB)
    assert exc.value.code == "NOT_FOUND"
    assert get_run(ctx, run_id)["status"] == "waiting"


def test_a_passed_deadline_fails_the_step_with_signal_timeout_handled_by_on_error(tenant, worker):
    ctx, _ = tenant
    plan = {"steps": [
        {"id": "ask", "skill": "signal.wait", "args": {"signal": "answer", "timeout_s": 0.5},
         "on_error": {"mode": "SKIP"}},
        {"id": "after", "skill": "json.transform", "args": {"input": {"v": {"$ref": "steps.ask.output"}},
                                                            "expr": "v"}}]}
    skipped = submit_run(ctx, plan, PUB)
    aborted = submit_run(ctx, {"steps": [{"id": "ask", "skill": "signal.wait",
                                          "args": {"signal": "answer", "timeout_s": 0.5}}]}, PUB)
    _waiting(skipped), _waiting(aborted)
    time.sleep(0.6)
    # beat's task, as beat sends it every AOS_SIGNAL_DEADLINE_INTERVAL_S
    from aos.tasks.beat import expire_signals

    entry = celery_config(get_settings())["beat_schedule"]["aos.signals.expire"]
    assert entry == {"task": "aos.signals.expire", "schedule": 5.0, "options": {"expires": 5.0}}
    assert expire_signals.apply().get() >= 2
    assert wait_for_run(skipped).status == "succeeded"
    view = get_run(ctx, skipped)
    assert view["steps"][0]["status"] == "skipped" and view["steps"][0]["error"]["code"] == "SIGNAL_TIMEOUT"
    assert "signal.expired" in _types(ctx, skipped)
    run = wait_for_run(aborted)
    assert run.status == "failed" and run.error_code == "SIGNAL_TIMEOUT"
    with pytest.raises(AosError) as exc:  # too late
        deliver_signal(ctx, aborted, "answer", {}, None, PUB)
    assert exc.value.code == "RUN_NOT_WAITING"


def test_human_approve_goes_on_when_approved_and_fails_when_rejected(tenant, worker):
    ctx, _ = tenant
    plan = {"steps": [{"id": "ok", "skill": "human.approve", "args": {"reason": "ship it?"}}]}
    yes, no = submit_run(ctx, plan, PUB), submit_run(ctx, plan, PUB)
    _waiting(yes), _waiting(no)
    assert get_run(ctx, yes)["waiting"]["signal"] == "approval"
    with pytest.raises(AosError) as exc:
        deliver_signal(ctx, yes, "approval", {"approved": "yes"}, None, PUB)
    assert exc.value.code == "SIGNAL_PAYLOAD_INVALID"
    deliver_signal(ctx, yes, "approval", {"approved": True, "by": "ann"}, None, PUB)
    deliver_signal(ctx, no, "approval", {"approved": False, "comment": "not today"}, None, PUB)
    assert wait_for_run(yes).status == "succeeded"
    assert get_run(ctx, yes)["steps"][0]["output"] == {"approved": True, "by": "ann"}
    run = wait_for_run(no)
    assert run.status == "failed" and run.error_code == "APPROVAL_REJECTED" and "not today" in run.error_message


def test_escalate_parks_the_failed_run_and_a_signal_answers_for_the_step(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/down": Reply(404)}) as srv:
        plan = {"steps": [
            {"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/down")},
             "on_error": {"mode": "ESCALATE", "schema": {"type": "object", "required": ["status"]}}},
            {"id": "after", "skill": "json.transform", "args": {"input": {"$ref": "steps.fetch.output"},
                                                                "expr": "status"}}]}
        run_id = submit_run(ctx, plan, PUB)
        assert _waiting(run_id).status == "waiting"
    view = get_run(ctx, run_id)
    assert view["waiting"]["kind"] == "escalation" and view["waiting"]["signal"] == "escalation"
    assert view["waiting"]["reason"].startswith("HTTP_NOT_FOUND") and view["waiting"]["deadline"] is None
    assert view["steps"][0]["status"] == "waiting" and view["steps"][0]["error"]["code"] == "HTTP_NOT_FOUND"
    with pytest.raises(AosError) as exc:
        deliver_signal(ctx, run_id, "escalation", {"body": 1}, None, PUB)
    assert exc.value.code == "SIGNAL_PAYLOAD_INVALID"
    deliver_signal(ctx, run_id, "escalation", {"status": 200, "json": {"fixed": True}}, None, PUB)
    assert wait_for_run(run_id).status == "succeeded"
    view = get_run(ctx, run_id)
    assert view["steps"][0]["status"] == "succeeded" and view["steps"][0]["attempts"] == 2
    assert view["steps"][1]["output"] == 200


def test_escalation_deadline_fails_the_run_and_resume_tries_the_step_again(tenant, worker):
    ctx, _ = tenant
    hits = {"n": 0}

    def flaky(_req):
        hits["n"] += 1
        return Reply(404) if hits["n"] == 1 else Reply(200, json={"ok": True})

    with serve_http({"/x": flaky}) as srv:
        plan = {"steps": [{"id": "fetch", "skill": "http.request", "args": {"url": srv.url("/x")},
                           "on_error": {"mode": "ESCALATE", "timeout_s": 0.3}}]}
        timed_out = submit_run(ctx, plan, PUB)
        _waiting(timed_out)
        time.sleep(0.4)
        expire_waits(PUB)
        run = wait_for_run(timed_out)
        assert run.status == "failed" and run.error_code == "SIGNAL_TIMEOUT"

        hits["n"] = 0
        resumed = submit_run(ctx, {"steps": [{**plan["steps"][0], "on_error": {"mode": "ESCALATE"}}]}, PUB)
        _waiting(resumed)
        resume_run(ctx, resumed, PUB)  # a person fixed the cause: try the step again
        assert wait_for_run(resumed).status == "succeeded"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(RunWait).where(
            RunWait.run_id == resumed, RunWait.status == "waiting")) == 0


def test_cancel_closes_the_wait(tenant, worker):
    ctx, _ = tenant
    run_id = submit_run(ctx, _wait_plan(timeout_s=0.2), PUB)
    _waiting(run_id)
    cancel_run(ctx, run_id, PUB)
    time.sleep(0.3)
    expire_waits(PUB)
    assert get_run(ctx, run_id)["status"] == "cancelled"
    assert [w["status"] for w in list_signals(ctx, run_id)] == ["cancelled"]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Checkpoint).where(Checkpoint.run_id == run_id)) == 0
