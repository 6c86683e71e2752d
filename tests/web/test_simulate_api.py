"""POST /simulate: the simulator over HTTP (its estimates are tested in tests/services/test_simulate.py)."""

from __future__ import annotations

from sqlalchemy import func, select

from aos.db.models import Run
from aos.db.session import session_scope
from aos.services.agents import create_agent
from tests.web.api_helpers import TRANSFORM_PLAN, auth, new_tenant


def test_simulate_answers_estimates_and_verdicts_and_runs_nothing(client, aos_env):
    ctx, key = new_tenant()
    agent = create_agent(ctx, "sim", {"allowed_skills": ["json.transform"]})
    with session_scope() as s:
        runs_before = s.scalar(select(func.count()).select_from(Run))
    plan = {**TRANSFORM_PLAN, "budget": {"max_steps": 2}}
    r = client.post("/api/v1/simulate", json={"plan": plan, "agent_id": agent["id"],
                                              "inputs": {"order": {"items": []}}}, headers=auth(key))
    assert r.status_code == 200, r.json
    body = r.json
    assert [s["id"] for s in body["steps"]] == ["items", "qtys", "total"]
    assert {s["basis"] for s in body["steps"]} == {"cost_model"}
    assert body["capabilities"] == {"verdict": "allowed", "problems": []}
    assert body["budget"]["verdict"] == "exceeds" and body["budget"]["max_steps"] == 2
    assert body["total"]["estimated_cost_usd"] == 0.0
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Run)) == runs_before


def test_an_invalid_plan_is_422_with_every_problem_and_a_foreign_agent_is_404(client, tenant):
    _, key = tenant
    r = client.post("/api/v1/simulate", json={"plan": {"steps": [{"id": "a", "skill": "nope"}], "x": 1}},
                    headers=auth(key))
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    assert {p["path"] for p in r.json["problems"]} == {"$.steps[0].skill", "$.x"}
    other_ctx, _ = new_tenant()
    foreign = create_agent(other_ctx, "theirs", {})
    r = client.post("/api/v1/simulate", json={"plan": TRANSFORM_PLAN, "agent_id": foreign["id"]}, headers=auth(key))
    assert r.status_code == 404 and r.json["code"] == "NOT_FOUND"
