"""json.transform and json.validate through invoke_skill."""

from __future__ import annotations

import pytest

from aos.config import load_settings
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SkillContext
from aos.skills.json_skills import SKILLS

SKILL = {s.name: s for s in SKILLS}
ORDER = {"id": 7, "customer": {"name": "Ada", "email": "ada@example.com"},
         "lines": [{"sku": "A", "qty": 2, "price": 3.5}, {"sku": "B", "qty": 1, "price": 10}]}


def call(name: str, args: dict):
    ctx = SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1", settings=load_settings({}),
                       idempotency_key="r1:s1:1")
    outcome, _ = invoke_skill(SKILL[name], args, ctx)
    return outcome


def test_transform_selects_a_nested_value():
    out = call("json.transform", {"input": ORDER, "expr": "customer.email"})
    assert out.status == "ok"
    assert out.output == "ada@example.com"


def test_transform_projects_a_list():
    assert call("json.transform", {"input": ORDER, "expr": "lines[?qty > `1`].sku"}).output == ["A"]


def test_transform_reshapes_with_a_multiselect_hash():
    out = call("json.transform", {"input": ORDER, "expr": "{order: id, who: customer.name, skus: lines[].sku}"})
    assert out.output == {"order": 7, "who": "Ada", "skus": ["A", "B"]}


def test_transform_of_a_missing_path_is_null():
    out = call("json.transform", {"input": ORDER, "expr": "customer.phone.mobile"})
    assert out.status == "ok"
    assert out.output is None


@pytest.mark.parametrize("expr", ["lines[?qty >", "customer..name", "{a: }"])
def test_transform_syntax_error_is_expr_invalid(expr):
    out = call("json.transform", {"input": ORDER, "expr": expr})
    assert out.status == "error"
    assert out.error.code == "EXPR_INVALID"
    assert out.error.retryable is False


def test_transform_evaluation_error_is_expr_invalid():
    out = call("json.transform", {"input": ORDER, "expr": "sum(customer)"})
    assert out.error.code == "EXPR_INVALID"


@pytest.mark.parametrize("args,path", [
    ({"input": ORDER}, "args"),
    ({"input": ORDER, "expr": ""}, "args.expr"),
    ({"input": ORDER, "expr": "id", "query": "id"}, "args"),
])
def test_transform_bad_args_are_skill_args_invalid(args, path):
    out = call("json.transform", args)
    assert out.error.code == "SKILL_ARGS_INVALID"
    assert out.error.details["problems"][0]["path"] == path


SCHEMA = {
    "type": "object",
    "required": ["id", "customer"],
    "properties": {
        "id": {"type": "integer"},
        "customer": {"type": "object", "required": ["email"],
                     "properties": {"email": {"type": "string", "pattern": "@"}}},
        "lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer",
                                                                                       "minimum": 1}}}},
    },
}


def test_validate_accepts_a_valid_document():
    out = call("json.validate", {"input": ORDER, "schema": SCHEMA})
    assert out.status == "ok"
    assert out.output == {"valid": True, "errors": []}


def test_validate_lists_every_error_with_its_path():
    bad = {"id": "seven", "customer": {"email": "nobody"}, "lines": [{"qty": 1}, {"qty": 0}]}
    out = call("json.validate", {"input": bad, "schema": SCHEMA})
    assert out.status == "ok"
    assert out.output["valid"] is False
    paths = [e["path"] for e in out.output["errors"]]
    assert sorted(paths) == sorted(["$['customer']['email']", "$['id']", "$['lines'][1]['qty']"])
    assert all(e["message"] for e in out.output["errors"])


def test_validate_reports_a_missing_required_property_at_its_parent():
    out = call("json.validate", {"input": {"id": 1}, "schema": SCHEMA})
    assert out.output["errors"] == [{"path": "$", "message": "'customer' is a required property"}]


def test_raise_on_invalid_fails_with_json_schema_mismatch():
    out = call("json.validate", {"input": {"id": 1}, "schema": SCHEMA, "raise_on_invalid": True})
    assert out.status == "error"
    assert out.error.code == "JSON_SCHEMA_MISMATCH"
    assert out.error.details["errors"][0]["path"] == "$"
    valid = call("json.validate", {"input": ORDER, "schema": SCHEMA, "raise_on_invalid": True})
    assert valid.output["valid"] is True


def test_an_invalid_schema_is_skill_args_invalid():
    out = call("json.validate", {"input": ORDER, "schema": {"type": "no-such-type"}})
    assert out.error.code == "SKILL_ARGS_INVALID"
    assert "schema" in out.error.message


def test_validate_without_a_schema_is_skill_args_invalid():
    assert call("json.validate", {"input": ORDER}).error.code == "SKILL_ARGS_INVALID"


@pytest.mark.parametrize(("plan_args", "path"), [
    ({"input": {"x": 1}, "expr": "nope(x)"}, "$.steps[0].args.expr"),
    ({"input": {"$ref": "uppercase(inputs.x)"}, "expr": "@"}, "$.steps[0].args.input"),
])
def test_an_unknown_jmespath_function_is_refused_at_submission(plan_args, path):
    from aos.errors import AosError
    from aos.plan import parse_plan
    from aos.skills.registry import default_registry

    plan = {"inputs": {"x": "a"}, "steps": [{"id": "a", "skill": "json.transform", "args": plan_args}]}
    with pytest.raises(AosError) as exc:
        parse_plan(plan, default_registry())
    [problem] = [p for p in exc.value.problems if p["code"] == "EXPR_INVALID"]
    assert problem["path"] == path
    assert "unknown function" in problem["message"]


def test_known_jmespath_functions_still_validate():
    from aos.plan import parse_plan
    from aos.skills.registry import default_registry

    plan = {"steps": [{"id": "a", "skill": "json.transform",
                       "args": {"input": [3, 1], "expr": "sort(@) | [0] | to_string(@)"}}]}
    assert parse_plan(plan, default_registry()).steps[0].id == "a"


@pytest.mark.parametrize("expr", ["[" * 700 + "a" + "]" * 700, "!" * 2000 + "a", "a" + " || a" * 60,
                                  "a" + ".b" * 3000])
def test_transform_refuses_an_expression_beyond_the_plan_limits_as_a_failed_step(expr):
    """An expression that reaches the skill by reference meets the limits submission applies to literals."""
    out = call("json.transform", {"input": {"a": 1}, "expr": expr})
    assert out.status == "error" and out.error.code == "EXPR_TOO_COMPLEX", out.error
