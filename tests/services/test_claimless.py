"""Claimless steps: a pure step of an unlimited run is settled by one statement that also opens its attempt.

The step runs first and the settle is fenced by the run being at that step with no attempt of it yet: a
duplicate delivery, a cancel or a moved-on run makes it write nothing, and the claimed path decides —
the pure skill's run had no effect. These tests drive ``execute_step`` in this process against the real
database, in the order a broker could deliver (duplicates, a cancel between steps).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from aos.db.models import Checkpoint, Run
from aos.db.session import session_scope
from aos.services.enqueue import run_plan
from aos.services.execution import execute_step
from aos.services.runs import cancel_run, get_timeline, submit_run

PLAN = {"name": "claimless", "inputs": {"n": 2}, "steps": [
    {"id": "a", "skill": "json.transform", "args": {"input": {"$ref": "inputs.n"}, "expr": "@"}},
    {"id": "b", "skill": "json.transform", "args": {"input": {"$ref": "steps.a.output"}, "expr": "sum([@, @])"}},
    {"id": "c", "skill": "json.transform", "args": {"input": {"$ref": "steps.b.output"}, "expr": "sum([@, `1`])"}},
    {"id": "d", "skill": "json.transform", "args": {"input": {"$ref": "steps.c.output"}, "expr": "@"}},
]}


def _checkpoints(run_id: uuid.UUID) -> list[Checkpoint]:
    with session_scope() as s:
        return list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)
                              .order_by(Checkpoint.step_index, Checkpoint.attempt)))


def _run(run_id: uuid.UUID) -> Run:
    with session_scope() as s:
        run = s.get(Run, run_id)
        s.expunge(run)
        return run


def test_which_steps_go_without_a_claim(tenant):
    ctx, _ = tenant
    rp = run_plan(submit_run(ctx, PLAN, None))
    # not the first (the run's start) nor the last (the run's totals); pure json skills in between
    assert rp.claimless == (False, True, True, False)
    limited = run_plan(submit_run(ctx, {**PLAN, "budget": {"max_steps": 10}}, None))
    assert limited.claimless == (False, False, False, False)  # a limit is checked by the claim
    http = {**PLAN, "steps": [*PLAN["steps"][:2],
                              {"id": "c", "skill": "http.request", "args": {"url": "http://127.0.0.1:9/"}},
                              PLAN["steps"][3]]}
    assert run_plan(submit_run(ctx, http, None)).claimless == (False, True, False, False)  # effects need a claim


def test_a_run_of_claimless_steps_succeeds_with_one_checkpoint_each_and_an_ordered_timeline(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    for i in range(4):
        assert execute_step(str(run_id), i, f"w/{i}", first_delivery=True).action in ("continue", "stop")
    run = _run(run_id)
    assert run.status == "succeeded" and run.steps_started == 4 and run.attempt == 0 and not run.attempt_open
    cps = _checkpoints(run_id)
    assert [(c.step_id, c.attempt, c.deliveries, c.status) for c in cps] == [
        (s, 1, 1, "succeeded") for s in "abcd"]
    assert cps[3].outcome["output"] == 5
    events = [(e["type"], e.get("step_id")) for e in get_timeline(ctx, run_id)]
    assert events == [("run.queued", None), ("run.started", None),
                      *[(t, s) for s in "abcd" for t in ("step.started", "step.succeeded")],
                      ("run.succeeded", None)]


def test_a_duplicate_delivery_of_a_claimless_step_writes_nothing(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    execute_step(str(run_id), 0, "w/0", first_delivery=True)
    assert execute_step(str(run_id), 1, "w/1", first_delivery=True).action == "continue"
    # the broker delivers step 1 again (a duplicate chain): the fence fails, the claimed path says "done"
    again = execute_step(str(run_id), 1, "w/dup", first_delivery=True)
    assert again.action == "continue" and "already" in again.reason
    assert [(c.step_id, c.attempt) for c in _checkpoints(run_id)] == [("a", 1), ("b", 1)]
    assert _run(run_id).steps_started == 2


def test_a_cancelled_run_gets_no_claimless_checkpoint(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    execute_step(str(run_id), 0, "w/0", first_delivery=True)
    cancel_run(ctx, run_id, None)
    decision = execute_step(str(run_id), 1, "w/1", first_delivery=True)
    assert decision.action == "stop" and "cancelled" in decision.reason
    assert [c.step_id for c in _checkpoints(run_id)] == ["a"]
    run = _run(run_id)
    assert run.status == "cancelled" and run.steps_started == 1


def test_a_delivery_goes_on_with_the_next_claimless_steps_itself(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    # the chain of step 0's message holds steps 1-3: steps 1 and 2 are claimless, step 3 (the last) is not
    decision = execute_step(str(run_id), 0, "w/0", first_delivery=True, inline_limit=3)
    assert decision.action == "continue" and decision.inlined == 2
    assert [(c.step_id, c.worker) for c in _checkpoints(run_id)] == [("a", "w/0"), ("b", "w/0"), ("c", "w/0")]
    assert _run(run_id).next_step == 3
    # the chain holds fewer steps than could be inlined: never more than it holds
    other = submit_run(ctx, PLAN, None)
    assert execute_step(str(other), 0, "w/0", first_delivery=True, inline_limit=1).inlined == 1
    assert _run(other).next_step == 2


def test_inlining_stops_where_a_step_fails(tenant):
    ctx, _ = tenant
    plan = {**PLAN, "steps": [PLAN["steps"][0],
                              {"id": "b", "skill": "json.transform", "args": {"input": "x", "expr": "abs(@)"}},
                              *PLAN["steps"][2:]]}
    run_id = submit_run(ctx, plan, None)
    decision = execute_step(str(run_id), 0, "w/0", first_delivery=True, inline_limit=3)
    assert decision.action == "fail" and decision.inlined == 1
    run = _run(run_id)
    assert run.status == "failed" and run.next_step == 1
    assert [(c.step_id, c.status) for c in _checkpoints(run_id)] == [("a", "succeeded"), ("b", "failed")]
