"""Bad input gets a clear problem+json with a code, never a 500, and nothing is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from aos.db.models import Agent, Run, Workflow
from aos.db.session import session_scope
from tests.web.api_helpers import auth

OK_STEP = {"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"}}


def _stored() -> tuple[int, int, int]:
    with session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Run, Workflow, Agent))


@pytest.mark.parametrize(("path", "raw"), [
    # Postgres refuses NUL in text and jsonb; NaN is not JSON; a lone surrogate cannot be encoded
    ("/api/v1/runs", '{"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": "\\u0000", '
                     '"expr": "@"}}]}}'),
    ("/api/v1/runs", '{"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": NaN, '
                     '"expr": "@"}}]}}'),
    ("/api/v1/runs", '{"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": "\\ud800", '
                     '"expr": "@"}}]}}'),
    ("/api/v1/workflows", '{"name": "n", "plan": {"steps": [{"id": "a", "skill": "json.transform", '
                          '"args": {"input": {"k\\u0000": 1}, "expr": "@"}}]}}'),
    ("/api/v1/agents", '{"name": "agent\\u0000"}'),
    ("/api/v1/agents", '{"name": "x", "capabilities": {"max_cost_usd": Infinity}}'),
    ("/api/v1/simulate", '{"plan": {"steps": [], "name": "\\u0000"}}'),
])
def test_values_postgres_cannot_store_are_422_not_500(client, tenant, path, raw):
    _, key = tenant
    before = _stored()
    r = client.post(path, data=raw, content_type="application/json", headers=auth(key))
    assert r.status_code == 422 and r.content_type == "application/problem+json", r.get_data(as_text=True)
    assert r.json["code"] == "VALIDATION_ERROR"
    assert _stored() == before


@pytest.mark.parametrize("path", ["/api/v1/workflows/%00", "/api/v1/workflows/%00/versions",
                                  "/api/v1/runs/%00", "/api/v1/agents/%00/state", "/api/v1/runs/%00/steps/%00"])
def test_nul_in_a_path_is_404(client, tenant, path):
    _, key = tenant
    r = client.get(path, headers=auth(key))
    assert r.status_code == 404 and r.json["code"] == "NOT_FOUND"


def test_methods_routes_and_size_limits_answer_problem_json(client, tenant):
    _, key = tenant
    for method, path, status, code in (("DELETE", "/api/v1/workflows", 405, "METHOD_NOT_ALLOWED"),
                                       ("PATCH", "/api/v1/agents", 405, "METHOD_NOT_ALLOWED"),
                                       ("GET", "/api/v1/simulate", 405, "METHOD_NOT_ALLOWED"),
                                       ("GET", "/api/v1/no/such/thing", 404, "NOT_FOUND")):
        r = client.open(path, method=method, headers=auth(key))
        assert (r.status_code, r.content_type, r.json["code"]) == (status, "application/problem+json", code)
    big = '{"name": "big", "plan": {"description": "' + "x" * 1_100_000 + '"}}'
    r = client.post("/api/v1/workflows", data=big, content_type="application/json", headers=auth(key))
    assert r.status_code == 413 and r.json["code"] == "REQUEST_TOO_LARGE"


def test_a_deeply_nested_body_is_400_not_500(client, tenant):
    _, key = tenant
    r = client.post("/api/v1/runs", data="[" * 100_000, content_type="application/json", headers=auth(key))
    assert r.status_code == 400 and r.json["code"] == "BODY_MALFORMED"


@pytest.mark.parametrize("budget", [{"max_tokens": 10**20}, {"max_steps": 10**12}, {"max_wall_s": 10**12},
                                    {"max_cost_usd": 1e300}])
def test_a_budget_beyond_what_can_be_stored_is_422_not_500(client, tenant, budget):
    _, key = tenant
    before = _stored()
    r = client.post("/api/v1/runs", json={"plan": {"budget": budget, "steps": [OK_STEP]}}, headers=auth(key))
    assert r.status_code == 422 and r.json["code"] == "PLAN_INVALID"
    assert _stored() == before
