"""Agents over HTTP: create, list, their runs, provenance, state; capabilities enforced at submission."""

from __future__ import annotations

import uuid

import pytest

from aos.services.runs import submit_run
from tests.support.worker import wait_for_run
from tests.web.api_helpers import TRANSFORM_PLAN, auth, new_tenant, one_step_plan


def _agent(client, key: str, name: str, capabilities: dict | None = None) -> dict:
    r = client.post("/api/v1/agents", json={"name": name, "capabilities": capabilities}, headers=auth(key))
    assert r.status_code == 201, r.json
    return r.json


def test_create_read_list_and_conflict(client, aos_env):
    _, key = new_tenant()
    a = _agent(client, key, "planner", {"allowed_skills": ["json.transform"], "max_cost_usd": 0.5})
    assert a["name"] == "planner" and a["state"] == {} and a["created_at"]
    assert a["capabilities"] == {"allowed_skills": ["json.transform"], "max_cost_usd": 0.5}
    b = _agent(client, key, "second")
    assert client.get(f"/api/v1/agents/{a['id']}", headers=auth(key)).json == a
    page = client.get("/api/v1/agents?limit=1", headers=auth(key)).json
    assert page["items"] == [b]
    assert client.get(f"/api/v1/agents?cursor={page['next_cursor']}", headers=auth(key)).json == {
        "items": [a], "next_cursor": None}
    dup = client.post("/api/v1/agents", json={"name": "planner"}, headers=auth(key))
    assert dup.status_code == 409 and dup.json["code"] == "CONFLICT"
    for bad in ("nope", str(uuid.uuid4())):
        r = client.get(f"/api/v1/agents/{bad}", headers=auth(key))
        assert r.status_code == 404 and r.json["code"] == "NOT_FOUND"


@pytest.mark.parametrize(("body", "path"), [
    ({"name": ""}, "$.name"),
    ({"name": "   "}, "$.name"),
    ({"name": "x" * 101}, "$.name"),
    ({"name": "ok", "capabilities": {"teleport": True}}, "$.capabilities.teleport"),
    ({"name": "ok", "capabilities": {"allowed_skills": "json.transform"}}, "$.capabilities.allowed_skills"),
    ({"name": "ok", "capabilities": {"http_hosts": [1]}}, "$.capabilities.http_hosts[0]"),
    ({"name": "ok", "capabilities": {"max_cost_usd": -1}}, "$.capabilities.max_cost_usd"),
    ({"name": "ok", "capabilities": {"max_cost_usd": True}}, "$.capabilities.max_cost_usd"),
    ({"name": "ok", "colour": "red"}, "$.colour"),
])
def test_invalid_agents_are_422_with_the_path(client, tenant, body, path):
    _, key = tenant
    r = client.post("/api/v1/agents", json=body, headers=auth(key))
    assert r.status_code == 422 and r.json["code"] == "VALIDATION_ERROR"
    assert path in [p["path"] for p in r.json["problems"]], r.json


def test_agent_runs_provenance_and_capabilities(client, worker):
    ctx, key = new_tenant()
    agent = _agent(client, key, "runner", {"allowed_skills": ["json.transform"], "http_hosts": ["api.example.com"],
                                           "max_cost_usd": 1.0})
    plan = {**TRANSFORM_PLAN, "budget": {"max_cost_usd": 0.5}}
    client.post("/api/v1/workflows", json={"name": "agent-flow", "plan": plan}, headers=auth(key))
    via_wf = client.post("/api/v1/workflows/agent-flow/runs", json={"agent_id": agent["id"]}, headers=auth(key))
    direct = client.post("/api/v1/runs", json={"plan": plan, "agent_id": agent["id"]}, headers=auth(key))
    not_agents = client.post("/api/v1/runs", json={"plan": one_step_plan()}, headers=auth(key))
    assert {via_wf.status_code, direct.status_code, not_agents.status_code} == {201}
    for r in (via_wf, direct, not_agents):
        wait_for_run(uuid.UUID(r.json["id"]))

    runs = client.get(f"/api/v1/agents/{agent['id']}/runs", headers=auth(key)).json
    assert [r["id"] for r in runs["items"]] == [direct.json["id"], via_wf.json["id"]]
    assert client.get(f"/api/v1/agents/{agent['id']}/runs?status=failed", headers=auth(key)).json["items"] == []
    one = client.get(f"/api/v1/agents/{agent['id']}/runs/{direct.json['id']}", headers=auth(key))
    assert one.status_code == 200 and one.json["agent_id"] == agent["id"] and one.json["status"] == "succeeded"
    foreign = client.get(f"/api/v1/agents/{agent['id']}/runs/{not_agents.json['id']}", headers=auth(key))
    assert foreign.status_code == 404 and foreign.json["code"] == "NOT_FOUND"

    prov = client.get(f"/api/v1/agents/{agent['id']}/provenance?limit=1", headers=auth(key)).json
    [latest] = prov["items"]
    assert latest["run_id"] == direct.json["id"] and latest["workflow_id"] is None
    assert latest["skills"] == {"items": "json.transform@1", "qtys": "json.transform@1", "total": "json.transform@1"}
    older = client.get(f"/api/v1/agents/{agent['id']}/provenance?cursor={prov['next_cursor']}",
                       headers=auth(key)).json["items"]
    assert [(p["run_id"], p["workflow_name"], p["workflow_version"], p["status"]) for p in older] == [
        (via_wf.json["id"], "agent-flow", 1, "succeeded")]
    assert older[0]["plan_hash"] == via_wf.json["plan_hash"] and older[0]["finished_at"]

    # capabilities at submission: a skill, a literal host, and a budget above the agent's
    denied = {"budget": {"max_cost_usd": 2.0}, "steps": [
        {"id": "v", "skill": "json.validate", "args": {"input": 1, "schema": {}}},
        {"id": "h", "skill": "http.request", "args": {"url": "https://evil.example.org/x"}}]}
    r = client.post("/api/v1/runs", json={"plan": denied, "agent_id": agent["id"]}, headers=auth(key))
    assert r.status_code == 403 and r.json["code"] == "CAPABILITY_DENIED"
    assert {p["path"] for p in r.json["problems"]} == {
        "$.steps[0].skill", "$.steps[1].skill", "$.steps[1].args.url", "$.budget.max_cost_usd"}
    unknown_agent = client.post("/api/v1/runs", json={"plan": plan, "agent_id": str(uuid.uuid4())},
                                headers=auth(key))
    assert unknown_agent.status_code == 404 and unknown_agent.json["code"] == "NOT_FOUND"


def test_state_is_replaced_as_a_whole(client, tenant):
    ctx, key = tenant
    agent = _agent(client, key, "stateful")
    assert client.get(f"/api/v1/agents/{agent['id']}/state", headers=auth(key)).json == {
        "state": {}, "updated_at": None}
    put = client.put(f"/api/v1/agents/{agent['id']}/state", json={"state": {"seen": [1, 2], "n": 2}},
                     headers=auth(key))
    assert put.status_code == 200 and put.json["state"] == {"seen": [1, 2], "n": 2} and put.json["updated_at"]
    client.put(f"/api/v1/agents/{agent['id']}/state", json={"state": {"n": 3}}, headers=auth(key))
    got = client.get(f"/api/v1/agents/{agent['id']}/state", headers=auth(key)).json
    assert got["state"] == {"n": 3} and got["updated_at"] >= put.json["updated_at"]
    assert client.get(f"/api/v1/agents/{agent['id']}", headers=auth(key)).json["state"] == {"n": 3}
    for body in ({"state": [1]}, {}, {"state": {"x": "\u0000"}}):
        r = client.put(f"/api/v1/agents/{agent['id']}/state", json=body, headers=auth(key))
        assert r.status_code == 422 and r.json["code"] == "VALIDATION_ERROR"
    assert client.get(f"/api/v1/agents/{agent['id']}/state", headers=auth(key)).json["state"] == {"n": 3}
    submit_run(ctx, one_step_plan(), None, agent_id=uuid.UUID(agent["id"]))  # an agent without policy: all allowed
