"""on_error keeps its promise (issue 15.2): RETRY tries permanent failures again, ESCALATE waits, nothing is a
silent ABORT; a run whose retryable failure ran out of attempts is dead_lettered."""

from __future__ import annotations

import pytest

from aos.errors import AosError
from aos.plan import parse_plan
from aos.services.runs import get_run, submit_run
from aos.skills.registry import default_registry
from aos.tasks.publisher import CeleryPublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PUB = CeleryPublisher()


def test_on_error_retry_tries_a_permanent_failure_again_until_it_passes(tenant, worker):
    ctx, _ = tenant
    hits = {"n": 0}

    def once_missing(_req):
        hits["n"] += 1
        return Reply(404) if hits["n"] == 1 else Reply(200, json={"v": 1})

    with serve_http({"/x": once_missing}) as srv:
        step = {"id": "get", "skill": "http.request", "args": {"url": srv.url("/x")},
                "retry": {"max_attempts": 3, "backoff_s": 0.05}}
        retried = submit_run(ctx, {"steps": [{**step, "on_error": {"mode": "RETRY"}}]}, PUB)
        assert wait_for_run(retried).status == "succeeded"
        hits["n"] = 0
        aborted = submit_run(ctx, {"steps": [step]}, PUB)  # ABORT: a 404 is not retried
        assert wait_for_run(aborted).status == "failed"
    assert get_run(ctx, retried)["steps"][0]["attempts"] == 2
    assert get_run(ctx, aborted)["steps"][0]["attempts"] == 1


def test_on_error_retry_stops_at_max_attempts_and_never_retries_what_cannot_change(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/gone": Reply(404)}) as srv:
        plan = {"steps": [{"id": "get", "skill": "http.request", "args": {"url": srv.url("/gone")},
                           "retry": {"max_attempts": 3, "backoff_s": 0.01}, "on_error": {"mode": "RETRY"}}]}
        run_id = submit_run(ctx, plan, PUB)
        run = wait_for_run(run_id)
        assert len(srv.requests) == 3
    assert run.status == "failed" and run.error_code == "HTTP_NOT_FOUND"
    assert get_run(ctx, run_id)["steps"][0]["attempts"] == 3
    # a refusal of the plan's own data (category plan) comes back the same: not tried again
    plan = {"steps": [{"id": "check", "skill": "json.validate",
                       "args": {"input": 1, "schema": {"type": "string"}, "raise_on_invalid": True},
                       "retry": {"max_attempts": 3, "backoff_s": 0.01}, "on_error": {"mode": "RETRY"}}]}
    run_id = submit_run(ctx, plan, PUB)
    assert wait_for_run(run_id).error_code == "JSON_SCHEMA_MISMATCH"
    assert get_run(ctx, run_id)["steps"][0]["attempts"] == 1


def test_a_transient_failure_out_of_attempts_leaves_the_run_dead_lettered(tenant, worker):
    ctx, _ = tenant
    with serve_http({"/down": Reply(503)}) as srv:
        run_id = submit_run(ctx, {"steps": [{"id": "get", "skill": "http.request", "args": {"url": srv.url("/down")},
                                             "retry": {"max_attempts": 2, "backoff_s": 0.01}}]}, PUB)
        run = wait_for_run(run_id)
    assert run.status == "dead_lettered" and run.error_code == "HTTP_SERVICE_UNAVAILABLE"


@pytest.mark.parametrize(("on_error", "path"), [
    ({"mode": "SKIP", "timeout_s": 5}, "$.steps[0].on_error.timeout_s"),
    ({"mode": "ESCALATE", "signal": "no spaces"}, "$.steps[0].on_error.signal"),
    ({"mode": "ESCALATE", "schema": {"type": 12}}, "$.steps[0].on_error.schema"),
    ({"mode": "ESCALATE", "timeout_s": 0}, "$.steps[0].on_error.timeout_s"),
    ({"mode": "NOTHING"}, "$.steps[0].on_error.mode"),
])
def test_plan_validation_says_what_each_mode_takes(on_error, path):
    plan = {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}, "on_error": on_error}]}
    with pytest.raises(AosError) as exc:
        parse_plan(plan, default_registry())
    assert exc.value.code == "PLAN_INVALID" and exc.value.problems[0]["path"] == path


def test_signal_wait_args_are_checked_at_submission():
    plan = {"steps": [{"id": "a", "skill": "signal.wait", "args": {"signal": "go", "schema": {"type": "nope"}}}]}
    with pytest.raises(AosError) as exc:
        parse_plan(plan, default_registry())
    assert exc.value.code == "SKILL_ARGS_INVALID" and exc.value.problems[0]["path"] == "$.steps[0].args.schema"
