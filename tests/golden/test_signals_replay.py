"""Golden replay records signals like any other input: a replay answers a waiting step from the recording, at
once, without waiting for anyone; an escalated step's answer is replayed the same way."""

from __future__ import annotations

import time
import uuid

from aos.services import golden
from aos.services.runs import submit_run
from aos.services.signals import deliver_signal
from tests.golden.helpers import PUB, record
from tests.support.http_server import Reply, serve_http
from tests.support.worker import wait_for_run

PLAN = {"name": "golden-signals", "steps": [
    {"id": "ask", "skill": "signal.wait", "args": {"signal": "size", "schema": {"type": "object"}}},
    {"id": "ok", "skill": "human.approve", "args": {"reason": "order it?"}},
    {"id": "pick", "skill": "json.transform", "args": {"input": {"$ref": "steps.ask.output"}, "expr": "size"}}]}


def _parked(run_id) -> None:
    wait_for_run(uuid.UUID(str(run_id)), statuses=("waiting",))


def test_a_replay_answers_waiting_steps_from_the_recorded_signals(tenant, worker, golden_key):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, PUB)
    _parked(run_id)
    deliver_signal(ctx, run_id, "size", {"size": "M"}, None, PUB)
    time.sleep(0.2)
    _parked(run_id)
    deliver_signal(ctx, run_id, "approval", {"approved": True, "by": "ann"}, None, PUB)
    assert wait_for_run(run_id).status == "succeeded"
    doc = record(ctx, str(run_id))
    golden.verify(ctx, doc)
    steps = {s["id"]: s for s in doc["body"]["steps"]}
    assert steps["ask"]["outcome"]["output"] == {"size": "M"}
    assert steps["ask"]["attempts"][-1]["call"]["raw"] == {"signal": "size", "payload": {"size": "M"}}

    started = time.monotonic()
    report = golden.replay(ctx, doc, PUB, timeout_s=30)
    assert report["identical"], report["divergence"]
    assert time.monotonic() - started < 20  # nobody was asked: the recording answered


def test_an_escalated_step_answered_by_a_person_replays_identically(tenant, worker, golden_key):
    ctx, _ = tenant
    with serve_http({"/x": Reply(404)}) as srv:
        plan = {"name": "golden-escalation", "steps": [
            {"id": "get", "skill": "http.request", "args": {"url": srv.url("/x")}, "on_error": {"mode": "ESCALATE"}},
            {"id": "use", "skill": "json.transform", "args": {"input": {"$ref": "steps.get.output"}, "expr": "v"}}]}
        run_id = submit_run(ctx, plan, PUB)
        _parked(run_id)
        deliver_signal(ctx, run_id, "escalation", {"v": 7}, None, PUB)
        assert wait_for_run(run_id).status == "succeeded"
        doc = record(ctx, str(run_id))
        requests_before = len(srv.requests)
        report = golden.replay(ctx, doc, PUB, timeout_s=30)
        assert report["identical"], report["divergence"]
        assert len(srv.requests) == requests_before
