"""Stored workflows are versioned and runs pin their version; agents' capabilities are enforced."""

from __future__ import annotations

import uuid

import pytest

from aos.errors import AosError
from aos.services.agents import create_agent
from aos.services.runs import get_run, submit_run
from aos.services.workflows import get_workflow, run_workflow, save_workflow
from aos.tasks.publisher import CeleryPublisher
from tests.support.worker import wait_for_run


def _plan(expr: str) -> dict:
    return {"inputs": {"x": {"a": 1, "b": 2}},
            "steps": [{"id": "pick", "skill": "json.transform", "args": {"input": {"$ref": "inputs.x"}, "expr": expr}}]}


def test_saving_again_makes_a_new_version_and_a_run_pins_the_one_it_started_with(tenant, worker):
    ctx, _ = tenant
    v1 = save_workflow(ctx, "pick", _plan("a"))
    run_id = run_workflow(ctx, "pick", None)  # not published yet
    v2 = save_workflow(ctx, "pick", _plan("b"))
    assert (v1["version"], v2["version"]) == (1, 2)
    assert get_workflow(ctx, "pick")["version"] == 2 and get_workflow(ctx, "pick", 1)["plan_hash"] == v1["plan_hash"]
    from aos.services.outbox import drain_outbox

    drain_outbox(CeleryPublisher())
    wait_for_run(run_id)
    run = get_run(ctx, run_id)
    assert run["workflow_id"] == v1["id"] and run["steps"][0]["output"] == 1  # v1's expression, not v2's
    later = run_workflow(ctx, "pick", CeleryPublisher(), inputs={"x": {"a": 0, "b": 9}})
    wait_for_run(later)
    assert get_run(ctx, later)["steps"][0]["output"] == 9


def test_invalid_workflow_is_refused_and_unknown_one_is_not_found(tenant):
    ctx, _ = tenant
    with pytest.raises(AosError) as e:
        save_workflow(ctx, "bad", {"steps": []})
    assert e.value.code == "PLAN_INVALID"
    with pytest.raises(AosError) as e:
        get_workflow(ctx, "bad")
    assert e.value.code == "NOT_FOUND"


def test_agent_capabilities_refuse_a_skill_and_an_over_budget_plan_at_submission(tenant):
    ctx, _ = tenant
    agent = create_agent(ctx, f"a-{uuid.uuid4().hex[:6]}", {"allowed_skills": ["json.transform"],
                                                           "max_cost_usd": 0.1})
    ok = dict(_plan("a"), budget={"max_cost_usd": 0.05})
    assert submit_run(ctx, ok, None, agent_id=uuid.UUID(agent["id"]))
    bad = {"budget": {"max_cost_usd": 1.0},
           "steps": [{"id": "v", "skill": "json.validate", "args": {"input": 1, "schema": {}}}]}
    with pytest.raises(AosError) as e:
        submit_run(ctx, bad, None, agent_id=uuid.UUID(agent["id"]))
    assert e.value.code == "CAPABILITY_DENIED"
    assert {p["path"] for p in e.value.problems} == {"$.steps[0].skill", "$.budget.max_cost_usd"}


def test_another_tenants_agent_cannot_be_used(tenant):
    from aos.db.session import session_scope
    from aos.services.tenancy import authenticate, create_api_key, create_tenant

    ctx, _ = tenant
    agent = create_agent(ctx, "mine", {})
    with session_scope() as s:
        key, _ = create_api_key(s, create_tenant(s, f"o-{uuid.uuid4().hex[:6]}"))
        other = authenticate(s, key)
    with pytest.raises(AosError) as e:
        submit_run(other, _plan("a"), None, agent_id=uuid.UUID(agent["id"]))
    assert e.value.code == "NOT_FOUND"
