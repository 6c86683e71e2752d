"""The timeline reads as one ordered sequence, though a step's own started/succeeded events live on its
checkpoint rather than in rows of their own."""

from __future__ import annotations

import dataclasses

from aos.db.session import session_scope
from aos.services import timeline
from aos.services.execution import execute_step
from aos.services.runs import get_timeline, submit_run

PLAN = {"name": "timeline-order", "budget": {"max_steps": 2}, "steps": [
    {"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}},
    # abs() of a string is a JMESPath runtime error: the fallback answers
    {"id": "b", "skill": "json.transform", "args": {"input": "x", "expr": "abs(@)"},
     "on_error": {"mode": "FALLBACK", "fallback": {"skill": "json.transform", "args": {"input": 2, "expr": "@"}}}},
]}


def test_events_come_in_the_order_they_happened_with_ids_that_only_grow(tenant):
    ctx, _ = tenant
    run_id = submit_run(ctx, PLAN, None)
    for i in range(2):
        execute_step(str(run_id), i, "test:1/t")
    events = get_timeline(ctx, run_id)
    assert [(e["type"], e["step_id"]) for e in events] == [
        ("run.queued", None), ("run.started", None),
        ("step.started", "a"), ("step.succeeded", "a"),
        ("step.started", "b"), ("step.fallback", "b"), ("step.succeeded", "b"),
        ("budget.warning", None), ("run.succeeded", None)]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    started, succeeded = events[2], events[3]
    assert started["data"] == {"attempt": 1}  # which process ran it: the operator's to see
    operator = dataclasses.replace(ctx, scopes=frozenset({"operator"}))
    assert get_timeline(operator, run_id)[2]["data"] == {"attempt": 1, "worker": "test:1/t"}
    assert succeeded["data"]["attempt"] == 1 and succeeded["data"]["cost_usd"] == 0.0
    assert isinstance(succeeded["data"]["duration_ms"], float)
    # a page after any event holds exactly the events that follow it (the raw rows, as operators see them)
    events = get_timeline(operator, run_id)
    with session_scope() as s:
        for k, event in enumerate(events):
            assert timeline.events_of(s, run_id, after_id=event["id"]) == events[k + 1:]
        assert timeline.events_of(s, run_id, limit=3) == events[:3]
