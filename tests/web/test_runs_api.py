"""The runs API end to end: a real worker executes, Postgres holds the checkpoints."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from aos.db.models import Checkpoint, Run
from aos.db.session import session_scope
from tests.support.worker import wait_for_run
from tests.web.api_helpers import auth

TRANSFORM_PLAN = {
    "name": "transform-chain",
    "inputs": {"order": {"items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}], "customer": "ada"}},
    "steps": [
        {"id": "items", "skill": "json.transform", "args": {"input": {"$ref": "inputs.order"}, "expr": "items"}},
        {"id": "qtys", "skill": "json.transform", "args": {"input": {"$ref": "steps.items.output"},
                                                           "expr": "[*].qty"}},
        {"id": "total", "skill": "json.transform", "args": {"input": {"$ref": "steps.qtys.output"},
                                                            "expr": "sum(@)"}},
        {"id": "label", "skill": "json.transform",
         "args": {"input": {"who": {"$ref": "inputs.order.customer"}}, "expr": "join('', ['for ', who])"}},
    ],
}


def _count_runs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Run))


def test_submitted_plan_runs_to_success_with_one_checkpoint_per_step(client, tenant, worker):
    _, key = tenant
    resp = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=auth(key))
    assert resp.status_code == 201, resp.json
    run_id = resp.json["id"]
    assert resp.json["status"] in ("queued", "running", "succeeded")
    wait_for_run(uuid.UUID(run_id), timeout=60)

    body = client.get(f"/api/v1/runs/{run_id}", headers=auth(key)).json
    assert body["status"] == "succeeded", body
    outputs = {s["id"]: s["output"] for s in body["steps"]}
    assert outputs == {"items": TRANSFORM_PLAN["inputs"]["order"]["items"], "qtys": [2, 3], "total": 5,
                       "label": "for ada"}
    for step in body["steps"]:
        assert step["status"] == "succeeded" and step["attempts"] == 1
        assert step["duration_ms"] is not None and step["finished_at"] is not None

    with session_scope() as s:
        rows = s.execute(select(Checkpoint.step_index, Checkpoint.status)
                         .where(Checkpoint.run_id == uuid.UUID(run_id)).order_by(Checkpoint.step_index)).all()
    assert rows == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded"), (3, "succeeded")]

    events = [e["type"] for e in client.get(f"/api/v1/runs/{run_id}/timeline", headers=auth(key)).json["items"]]
    assert events[0] == "run.queued" and events[-1] == "run.succeeded"
    assert events.count("step.succeeded") == 4


def test_inputs_given_at_submission_override_the_plans(client, tenant, worker):
    _, key = tenant
    resp = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN,
                                             "inputs": {"order": {"items": [{"qty": 10}], "customer": "bo"}}},
                       headers=auth(key))
    assert resp.status_code == 201
    wait_for_run(uuid.UUID(resp.json["id"]))
    body = client.get(f"/api/v1/runs/{resp.json['id']}", headers=auth(key)).json
    assert {s["id"]: s["output"] for s in body["steps"]}["total"] == 10


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        ('{"plan": {"steps": [', 400, "BODY_MALFORMED", None),
        ({"plan": TRANSFORM_PLAN, "colour": "blue"}, 422, "VALIDATION_ERROR", "$.colour"),
        ({"plan": {"name": "empty", "steps": []}}, 422, "PLAN_INVALID", "$.steps"),
        ({"plan": {"name": "nosteps"}}, 422, "PLAN_INVALID", "$.steps"),
        ({"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": {}, "expr": "a[[x"}}]}},
         422, "EXPR_INVALID", "$.steps[0].args.expr"),
        ({"plan": {"steps": [{"id": "a", "skill": "json.transform",
                              "args": {"input": {"$ref": "inputs.x[?"}, "expr": "@"}}]}},
         422, "EXPR_INVALID", "$.steps[0].args.input"),
        ({"plan": {"steps": [{"id": "a", "skill": "no.such.skill", "args": {}}]}}, 422, "SKILL_NOT_FOUND",
         "$.steps[0].skill"),
        ({"plan": {"steps": [{"id": "a", "skill": "json.transform",
                              "args": {"input": {"$ref": "steps.later.output"}, "expr": "@"}},
                             {"id": "later", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}]}},
         422, "REF_UNRESOLVED", "$.steps[0].args.input"),
        ({"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"expr": "@"}}]}},
         422, "SKILL_ARGS_INVALID", "$.steps[0].args"),
        ({"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"},
                              "retry": {"max_attempts": 0}}]}}, 422, "PLAN_INVALID", "$.steps[0].retry.max_attempts"),
        ({"plan": {"budget": {"max_steps": 1}, "steps": [
            {"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}},
            {"id": "b", "skill": "json.transform", "args": {"input": 2, "expr": "@"}}]}},
         402, "BUDGET_EXCEEDED", "$.budget.max_steps"),  # infeasible: every step starts at least once
        ({"plan": "not an object"}, 422, "VALIDATION_ERROR", None),
        ([1, 2], 422, "VALIDATION_ERROR", None),
    ],
)
def test_bad_input_gets_problem_json_with_a_code_and_stores_nothing(client, tenant, body, status, code, path):
    _, key = tenant
    before = _count_runs()
    if isinstance(body, str):
        resp = client.post("/api/v1/runs", data=body, content_type="application/json", headers=auth(key))
    else:
        resp = client.post("/api/v1/runs", json=body, headers=auth(key))
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    problem = resp.json
    assert problem["code"] == code and problem["status"] == status and problem["detail"]
    if path is not None:
        assert path in [p["path"] for p in problem["problems"]], problem
    assert "Traceback" not in resp.get_data(as_text=True)
    assert _count_runs() == before


def test_a_plan_with_several_problems_reports_each_with_its_path(client, tenant):
    _, key = tenant
    plan = {"steps": [{"id": "a", "skill": "nope"}, {"id": "a", "skill": "json.transform",
                                                     "args": {"input": 1, "expr": "[["}}], "extra": 1}
    problems = client.post("/api/v1/runs", json={"plan": plan}, headers=auth(key)).json["problems"]
    assert {(p["path"], p["code"]) for p in problems} >= {
        ("$.extra", "PLAN_INVALID"), ("$.steps[0].skill", "SKILL_NOT_FOUND"),
        ("$.steps[1].id", "PLAN_INVALID"), ("$.steps[1].args.expr", "EXPR_INVALID")}


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "AUTH_MISSING"), ({"Authorization": "Bearer aos_nope_nope"}, "AUTH_INVALID"),
     ({"Authorization": "Basic abc"}, "AUTH_INVALID"), ({"Authorization": "Bearer garbage"}, "AUTH_INVALID")],
)
def test_missing_or_bad_key_is_401_problem_json(client, headers, code, aos_env):
    resp = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=headers)
    assert resp.status_code == 401 and resp.content_type == "application/problem+json"
    assert resp.json["code"] == code


def test_revoked_key_is_refused(client, tenant):
    from aos.services.tenancy import revoke_api_key

    ctx, key = tenant
    assert client.get("/api/v1/runs", headers=auth(key)).status_code == 200
    with session_scope() as s:
        revoke_api_key(s, ctx.tenant_id, key.split("_")[1])
    resp = client.get("/api/v1/runs", headers=auth(key))
    assert resp.status_code == 401 and resp.json["code"] == "AUTH_INVALID"


def test_another_tenants_run_is_not_found(client, tenant, aos_env):
    from aos.db.session import session_scope as scope
    from aos.services.tenancy import create_api_key, create_tenant

    _, key = tenant
    run_id = client.post("/api/v1/runs", json={"plan": TRANSFORM_PLAN}, headers=auth(key)).json["id"]
    with scope() as s:
        other_key, _ = create_api_key(s, create_tenant(s, f"other-{uuid.uuid4().hex[:6]}"))
    for path in (f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/timeline"):
        resp = client.get(path, headers=auth(other_key))
        assert resp.status_code == 404 and resp.json["code"] == "NOT_FOUND"
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth(other_key)).status_code == 404
    assert run_id not in [r["id"] for r in client.get("/api/v1/runs", headers=auth(other_key)).json["items"]]
    assert client.get("/api/v1/runs/not-a-uuid", headers=auth(key)).json["code"] == "NOT_FOUND"


def test_unknown_route_and_wrong_method_are_problem_json(client, tenant):
    _, key = tenant
    r = client.get("/api/v1/nothing-here", headers=auth(key))
    assert r.status_code == 404 and r.json["code"] == "NOT_FOUND"
    r = client.delete("/api/v1/runs", headers=auth(key))
    assert r.status_code == 405 and r.json["code"] == "METHOD_NOT_ALLOWED"


def test_oversized_body_is_413(client, tenant, aos_env):
    _, key = tenant
    big = "x" * (1_048_576 + 10)
    r = client.post("/api/v1/runs", data='{"plan": "' + big + '"}', content_type="application/json",
                    headers=auth(key))
    assert r.status_code == 413 and r.json["code"] == "REQUEST_TOO_LARGE"


def test_health_readiness_and_openapi(client, aos_env):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "broker": "ok"}
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/runs" in spec["paths"] and "/api/v1/runs/{run_id}" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert client.get("/api/v1/docs").status_code == 200
