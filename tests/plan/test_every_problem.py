"""A plan with several problems reports them all in one answer, each with its JSON path and code: a reference
that does not resolve does not hide a literal argument that is wrong beside it."""

from __future__ import annotations

import pytest

from aos.errors import AosError
from aos.plan import parse_plan
from aos.skills.registry import default_registry
from tests.web.api_helpers import auth


def _problems(plan: dict) -> list[tuple[str, str]]:
    with pytest.raises(AosError) as err:
        parse_plan(plan, default_registry())
    return [(p["path"], p["code"]) for p in err.value.problems]


def test_an_unresolved_ref_and_an_invalid_expression_are_both_reported():
    plan = {"steps": [{"id": "t", "skill": "json.transform",
                       "args": {"input": {"$ref": "steps.nope.output"}, "expr": "a[["}}]}
    assert _problems(plan) == [("$.steps[0].args.input", "REF_UNRESOLVED"), ("$.steps[0].args.expr", "EXPR_INVALID")]


def test_every_problem_of_every_step_at_once():
    plan = {"name": "", "budget": {"max_steps": -1}, "steps": [
        {"id": "a", "skill": "json.transform", "args": {"input": {"$ref": "inputs.missing"}, "expr": 7}},
        {"id": "b", "skill": "http.request", "args": {"method": "FETCH", "url": "https://example.com/${steps.zz.output}"},
         "timeout_s": -3},
        {"id": "c", "skill": "no.such.skill"},
        {"id": "d", "skill": "json.validate", "args": {"input": {"$ref": "steps.a.output"}, "schema": "not a schema",
                                                       "extra": True}},
    ]}
    found = _problems(plan)
    assert ("$.name", "PLAN_INVALID") in found
    assert ("$.budget.max_steps", "PLAN_INVALID") in found
    assert ("$.steps[0].args.input", "REF_UNRESOLVED") in found
    assert ("$.steps[0].args.expr", "SKILL_ARGS_INVALID") in found          # literal, beside the reference
    assert ("$.steps[1].args.url", "REF_UNRESOLVED") in found
    assert ("$.steps[1].args.method", "SKILL_ARGS_INVALID") in found        # literal, beside the reference
    assert ("$.steps[1].timeout_s", "PLAN_INVALID") in found
    assert ("$.steps[2].skill", "SKILL_NOT_FOUND") in found
    assert any(path.startswith("$.steps[3].args") and code == "SKILL_ARGS_INVALID" for path, code in found)


def test_what_a_reference_fills_is_judged_when_the_step_runs():
    # a referenced value may be anything now: its type is checked against the input schema at run time
    plan = {"inputs": {"url": "https://example.com"}, "steps": [
        {"id": "b", "skill": "http.request", "args": {"method": "GET", "url": {"$ref": "inputs.url"}}},
        {"id": "t", "skill": "json.transform", "args": {"input": {"$ref": "steps.b.output"},
                                                       "expr": {"$ref": "inputs.url"}}}]}
    assert parse_plan(plan, default_registry()).steps[1].id == "t"


def test_the_api_answers_with_every_problem(client, tenant):
    _, key = tenant
    plan = {"steps": [{"id": "t", "skill": "json.transform",
                       "args": {"input": {"$ref": "steps.nope.output"}, "expr": "a[["}}]}
    res = client.post("/api/v1/runs", json={"plan": plan}, headers=auth(key))
    assert res.status_code == 422, res.json
    assert [(p["path"], p["code"]) for p in res.json["problems"]] == [
        ("$.steps[0].args.input", "REF_UNRESOLVED"), ("$.steps[0].args.expr", "EXPR_INVALID")]
