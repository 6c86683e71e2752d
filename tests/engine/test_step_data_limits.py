"""What a step resolves and produces is held to the limits, through a real worker (issue 11, items 1, 2, 10).

A small plan can build large or deep data with references and expressions; the worker refuses it with a
catalog code in the step's checkpoint (the run fails like on any failure) instead of storing it or
overflowing its stack. Secret args reach the skill whole and are stored masked.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from aos.db.models import Checkpoint
from aos.db.session import session_scope
from aos.limits import MAX_STEP_DATA_DEPTH
from aos.services.runs import submit_run
from aos.tasks.publisher import CeleryPublisher
from tests.ops.conftest import QueuePublisher
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run


def _checkpoints(run_id: uuid.UUID) -> list[Checkpoint]:
    with session_scope() as s:
        return list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)
                              .order_by(Checkpoint.step_index, Checkpoint.attempt)))


def _small_caps_worker(start_worker) -> QueuePublisher:
    queue = f"aos.steps.caps.{uuid.uuid4().hex[:8]}"
    start_worker("caps", AOS_STEP_QUEUE=queue, AOS_MAX_STEP_OUTPUT_BYTES="2000", AOS_MAX_STEP_ARGS_BYTES="1500")
    return QueuePublisher(queue)


def test_an_output_over_the_cap_fails_its_step_with_output_too_large(tenant, start_worker):
    ctx, _ = tenant
    pub = _small_caps_worker(start_worker)
    # 600 characters in, four copies out: 2,400 bytes of output from a plan of a few hundred bytes
    plan = {"name": "caps-out", "inputs": {"s": "x" * 600}, "steps": [
        {"id": "grow", "skill": "json.transform", "args": {"input": {"$ref": "inputs.s"}, "expr": "[@, @, @, @]"}}]}
    run_id = submit_run(ctx, plan, pub)
    run = wait_for_run(run_id, timeout=30)
    assert (run.status, run.error_code) == ("failed", "OUTPUT_TOO_LARGE"), run.error_message
    assert "AOS_MAX_STEP_OUTPUT_BYTES (2000)" in run.error_message
    (cp,) = _checkpoints(run_id)
    assert cp.error_code == "OUTPUT_TOO_LARGE" and cp.outcome.get("output") is None  # nothing large stored


def test_resolved_args_over_the_cap_fail_before_the_skill_with_args_too_large(tenant, start_worker):
    ctx, _ = tenant
    pub = _small_caps_worker(start_worker)
    plan = {"name": "caps-args", "inputs": {"s": "y" * 450}, "steps": [
        {"id": "grow", "skill": "json.transform", "args": {"input": {"$ref": "inputs.s"}, "expr": "[@, @, @, @]"}},
        {"id": "use", "skill": "json.transform", "args": {"input": {"$ref": "steps.grow.output"}, "expr": "length(@)"}},
    ]}
    run_id = submit_run(ctx, plan, pub)
    run = wait_for_run(run_id, timeout=30)
    assert (run.status, run.error_code) == ("failed", "ARGS_TOO_LARGE"), run.error_message
    grow, use = _checkpoints(run_id)
    assert grow.status == "succeeded" and use.error_code == "ARGS_TOO_LARGE" and use.args is None


def test_an_output_built_deeper_than_the_limit_fails_with_json_too_deep_and_the_worker_lives(tenant, worker):
    ctx, _ = tenant
    wrap = "[" * 20 + "@" + "]" * 20  # each step nests its input 20 levels deeper
    deep: object = 1
    for _ in range(50):
        deep = [deep]
    steps = [{"id": "s1", "skill": "json.transform", "args": {"input": {"$ref": "inputs.v"}, "expr": wrap}}]
    for i in range(2, 6):
        steps.append({"id": f"s{i}", "skill": "json.transform",
                      "args": {"input": {"$ref": f"steps.s{i - 1}.output"}, "expr": wrap}})
    run_id = submit_run(ctx, {"name": "deep", "inputs": {"v": deep}, "steps": steps}, CeleryPublisher())
    run = wait_for_run(run_id, timeout=30)
    assert (run.status, run.error_code) == ("failed", "JSON_TOO_DEEP"), run.error_message
    assert f"deeper than {MAX_STEP_DATA_DEPTH} levels" in run.error_message
    # 50 + 20 × 4 = 130 levels: the fourth step's output is the first one over 128
    assert [(c.step_id, c.status) for c in _checkpoints(run_id)] == [
        ("s1", "succeeded"), ("s2", "succeeded"), ("s3", "succeeded"), ("s4", "failed")]
    assert worker.proc.poll() is None  # no worker process died on it
    # and the worker still runs the next plan
    ok = submit_run(ctx, {"name": "after-deep", "steps": [
        {"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}, CeleryPublisher())
    assert wait_for_run(ok, timeout=30).status == "succeeded"


def test_secret_args_reach_the_skill_whole_and_are_stored_masked(tenant, worker):
    ctx, _ = tenant
    with serve_http({"GET /me": Reply(json={"ok": True})}) as srv:
        url = srv.url("/me")
        plan = {"name": "secrets", "steps": [
            {"id": "call", "skill": "http.request",
             "args": {"url": url + "?api_key=k-123&page=2",
                      "headers": {"Authorization": "Bearer s3cr3t-token", "Accept": "application/json"}}}]}
        run_id = submit_run(ctx, plan, CeleryPublisher())
        assert wait_for_run(run_id, timeout=30).status == "succeeded"
        (req,) = srv.requests
    assert req.headers["authorization"] == "Bearer s3cr3t-token"  # the call got the real values
    assert "api_key=k-123" in req.target
    (cp,) = _checkpoints(run_id)
    stored = str(cp.args)
    for secret in ("s3cr3t-token", "k-123"):
        assert secret not in stored, cp.args
    assert cp.args["headers"]["Authorization"] == "***" and cp.args["headers"]["Accept"] == "application/json"
    assert "page=2" in cp.args["url"]
