"""Hostile request bodies on every JSON endpoint: a clear 4xx problem+json with a code and a path, never a 500."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import MethodNotAllowed

from aos.db.models import Agent, Run, Workflow
from aos.db.session import session_scope
from aos.limits import (
    MAX_BODY_DEPTH,
    MAX_EXPR_CHARS,
    MAX_EXPR_DEPTH,
    MAX_INTEGER_DIGITS,
    MAX_VALUE_DEPTH,
)
from tests.support.worker import wait_for_run
from tests.web.api_helpers import auth

HUGE = "7" * (MAX_INTEGER_DIGITS + 1)


def _stored() -> tuple[int, ...]:
    with session_scope() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Run, Workflow, Agent))


def _json_operations(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation of the OpenAPI document that takes a JSON body."""
    spec = app.test_client().get("/api/v1/openapi.json").json
    ops = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "application/json" in (op.get("requestBody") or {}).get("content", {}):
                concrete = re.sub(r"\{[^}]*id\}", str(uuid.uuid4()), path)
                concrete = re.sub(r"\{version\}", "1", re.sub(r"\{[^}]+\}", "name", concrete))
                ops.append((method.upper(), concrete))
    return ops


def test_every_json_endpoint_refuses_an_overlong_integer_with_its_path(app, client, tenant):
    _, key = tenant
    ops = _json_operations(app)
    assert len(ops) >= 8, ops  # runs, workflows, agents, simulate, golden, webhooks… all covered
    before = _stored()
    for method, path in ops:
        r = client.open(path, method=method, data='{"x": {"y": [1, N]}}'.replace("N", HUGE),
                        content_type="application/json", headers=auth(key))
        assert r.status_code == 422, (method, path, r.status_code, r.get_data(as_text=True)[:300])
        assert r.content_type == "application/problem+json"
        assert r.json["code"] == "JSON_NUMBER_TOO_LARGE"
        assert r.json["problems"] == [{"path": "$.x.y[1]", "code": "JSON_NUMBER_TOO_LARGE",
                                       "message": r.json["problems"][0]["message"]}]
        assert str(MAX_INTEGER_DIGITS) in r.json["problems"][0]["message"]
    assert _stored() == before


@pytest.mark.parametrize(("raw", "path"), [
    ('{"plan": {"inputs": {"n": -N}, "steps": []}}', "$.plan.inputs.n"),
    ('{"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": [0, N], "expr": "@"}}]}}',
     "$.plan.steps[0].args.input[1]"),
    ('{"plan": {"inputs": {"odd key": N}, "steps": []}}', '$.plan.inputs["odd key"]'),
])
def test_the_path_names_the_offending_number(client, tenant, raw, path):
    _, key = tenant
    r = client.post("/api/v1/runs", data=raw.replace("N", HUGE), content_type="application/json",
                    headers=auth(key))
    assert (r.status_code, r.json["code"]) == (422, "JSON_NUMBER_TOO_LARGE")
    assert r.json["problems"][0]["path"] == path


def test_the_longest_accepted_integer_still_works(client, tenant):
    _, key = tenant
    longest = "9" * MAX_INTEGER_DIGITS
    raw = ('{"plan": {"inputs": {"n": N}, "steps": [{"id": "a", "skill": "json.transform", '
           '"args": {"input": {"$ref": "inputs.n"}, "expr": "@"}}]}}').replace("N", longest)
    r = client.post("/api/v1/simulate", data=raw, content_type="application/json", headers=auth(key))
    assert r.status_code == 200, r.get_data(as_text=True)[:300]


def test_a_non_finite_number_names_its_path(client, tenant):
    _, key = tenant
    r = client.post("/api/v1/runs", data='{"plan": {"inputs": {"a": [1, NaN]}, "steps": []}}',
                    content_type="application/json", headers=auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")
    assert r.json["problems"][0]["path"] == "$.plan.inputs.a[1]"


def test_every_405_says_which_methods_are_allowed(app, client):
    """RFC 9110: a 405 carries `Allow`; our problem text points the caller at it."""
    adapter = app.url_map.bind("localhost")
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<[^>]+>", str(uuid.uuid4()), re.sub(r"<int:[^>]+>", "1", rule.rule))
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            try:
                adapter.match(path, method)
                continue  # some rule takes this method
            except MethodNotAllowed as exc:
                allowed = set(exc.valid_methods or ())
            r = client.open(path, method=method)
            assert (r.status_code, r.content_type, r.json["code"]) == \
                (405, "application/problem+json", "METHOD_NOT_ALLOWED"), (method, path)
            assert "Allow" in r.headers, (method, path)
            assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed, (method, path, r.headers["Allow"])
            checked += 1
    assert checked > 30


# --- limits of a plan: expressions and nesting (aos/limits.py) -----------------------------------

def _nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _transform(expr, input_=1) -> dict:
    return {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": input_, "expr": expr}}]}


def _brackets(depth: int) -> str:
    """A multiselect list nested so that the syntax tree is ``depth`` deep."""
    return "[" * (depth - 1) + "a" + "]" * (depth - 1)


@pytest.mark.parametrize(("plan", "path"), [
    (_transform(_brackets(MAX_EXPR_DEPTH + 1)), "$.steps[0].args.expr"),
    (_transform("[" * 2000 + "a" + "]" * 2000), "$.steps[0].args.expr"),   # deeper than the parser's stack
    (_transform("!" * 3000 + "a"), "$.steps[0].args.expr"),
    (_transform("a" + ".a" * (MAX_EXPR_CHARS // 2)), "$.steps[0].args.expr"),  # too long
    (_transform("@", {"$ref": "inputs." + _brackets(200)}), "$.steps[0].args.input"),
    (_transform("@", "x ${" + "(" * 900 + "inputs" + ")" * 900 + "}"), "$.steps[0].args.input"),
    (_transform("[" * 400 + "a" + "]" * 400, {"$ref": "inputs"}), "$.steps[0].args.expr"),  # checked with refs too
])
def test_a_too_complex_expression_has_its_own_code_and_path(client, tenant, plan, path):
    _, key = tenant
    before = _stored()
    for url, body in (("/api/v1/runs", {"plan": plan}), ("/api/v1/simulate", {"plan": plan}),
                      ("/api/v1/workflows", {"name": "deep", "plan": plan})):
        r = client.post(url, json=body, headers=auth(key))
        assert (r.status_code, r.content_type) == (422, "application/problem+json"), (url, r.json)
        assert r.json["code"] == "EXPR_TOO_COMPLEX", (url, r.json)
        assert [p["path"] for p in r.json["problems"]] == [path]
    assert _stored() == before


def test_an_expression_at_the_limits_is_accepted(client, tenant):
    _, key = tenant
    for expr in (_brackets(MAX_EXPR_DEPTH), "a" + ".a" * ((MAX_EXPR_CHARS - 1) // 2)):
        r = client.post("/api/v1/simulate", json={"plan": _transform(expr)}, headers=auth(key))
        assert r.status_code == 200, r.json


@pytest.mark.parametrize(("body", "path"), [
    ({"plan": {"inputs": {"x": _nested(MAX_VALUE_DEPTH + 1)}, **_transform("@")}}, "$.inputs.x"),
    ({"plan": _transform("@"), "inputs": {"y": _nested(MAX_VALUE_DEPTH + 1)}}, "$.inputs.y"),
    ({"plan": _transform("@", _nested(MAX_VALUE_DEPTH))}, "$.steps[0].args.input"),  # args count as one level
    ({"plan": {"steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": "@"},
                          "on_error": {"mode": "FALLBACK", "fallback": {
                              "skill": "json.transform", "args": {"input": _nested(MAX_VALUE_DEPTH), "expr": "@"}}}}]}},
     "$.steps[0].on_error.fallback.args.input"),
])
def test_values_nested_too_deeply_are_refused_with_their_path(client, tenant, body, path):
    _, key = tenant
    before = _stored()
    r = client.post("/api/v1/runs", json=body, headers=auth(key))
    assert (r.status_code, r.json["code"]) == (422, "JSON_TOO_DEEP"), r.json
    assert len(r.json["problems"]) == 1 and r.json["problems"][0]["path"].startswith(path), r.json
    assert _stored() == before


def test_values_at_the_depth_limit_are_accepted(client, tenant):
    _, key = tenant
    plan = {"inputs": {"x": _nested(MAX_VALUE_DEPTH)}, **_transform("@", _nested(MAX_VALUE_DEPTH - 1))}
    r = client.post("/api/v1/simulate", json={"plan": plan}, headers=auth(key))
    assert r.status_code == 200, r.json


def test_a_body_nested_beyond_any_plan_is_refused_with_a_path_not_as_malformed(client, tenant):
    _, key = tenant
    r = client.put("/api/v1/agents/00000000-0000-0000-0000-000000000000/state",
                   json={"state": _nested(MAX_BODY_DEPTH + 1)}, headers=auth(key))
    assert (r.status_code, r.json["code"]) == (422, "JSON_TOO_DEEP"), r.json
    assert r.json["problems"][0]["path"].startswith("$.state[0]")


def test_an_expression_that_arrives_by_reference_fails_its_step_not_the_worker(client, tenant, worker):
    """Submission cannot see an expression computed at run time: the skill meets the same limit."""
    _, key = tenant
    plan = {"inputs": {"e": "[" * 600 + "a" + "]" * 600},
            "steps": [{"id": "a", "skill": "json.transform", "args": {"input": 1, "expr": {"$ref": "inputs.e"}}}]}
    r = client.post("/api/v1/runs", json={"plan": plan}, headers=auth(key))
    assert r.status_code == 201, r.json
    run = wait_for_run(uuid.UUID(r.json["id"]))
    assert (run.status, run.error_code) == ("failed", "EXPR_TOO_COMPLEX")
    r = client.post("/api/v1/runs", json={"plan": _transform("a", {"a": 7})}, headers=auth(key))
    assert wait_for_run(uuid.UUID(r.json["id"])).status == "succeeded"  # the worker is alive


# --- what the OpenAPI document says is what the server checks (item 12) --------------------------------

@pytest.mark.parametrize(("url", "body", "path"), [
    ("/api/v1/runs", {"plan": _transform("@") | {"steps": [{"id": "a\n", "skill": "json.transform",
                                                           "args": {"input": 1, "expr": "@"}}]}}, "$.steps[0].id"),
    ("/api/v1/runs", {"plan": {"steps": [{"id": "a", "skill": "json.transform@01",
                                          "args": {"input": 1, "expr": "@"}}]}}, "$.steps[0].skill"),
    ("/api/v1/workflows", {"name": "flow\n", "plan": _transform("@")}, "$.name"),
    ("/api/v1/agents", {"name": "agent\n"}, "$.name"),
    ("/api/v1/agents", {"name": "ok", "capabilities": {"http_hosts": [""]}}, "$.capabilities.http_hosts[0]"),
])
def test_a_trailing_newline_or_another_spelling_is_refused_as_the_document_says(client, tenant, url, body, path):
    """Python's `$` matched before a final newline; the documented pattern (ECMA-262) does not."""
    _, key = tenant
    before = _stored()
    r = client.post(url, json=body, headers=auth(key))
    assert r.status_code == 422, r.json
    assert path in [p["path"] for p in r.json["problems"]], r.json
    assert _stored() == before


def test_an_unknown_query_parameter_is_refused(client, tenant):
    _, key = tenant
    r = client.get("/api/v1/runs?stauts=failed", headers=auth(key))
    assert (r.status_code, r.json["code"]) == (422, "VALIDATION_ERROR")
    assert r.json["problems"][0]["path"] == "query.stauts"
