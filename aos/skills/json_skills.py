"""json.transform (JMESPath) and json.validate (JSON Schema)."""

from __future__ import annotations

from typing import Any

import jmespath
import jmespath.exceptions

from aos.errors import AosError
from aos.expressions import INTERPOLATION, compile_expr
from aos.skills.base import CostModel, RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult


class JsonTransform(Skill):
    name = "json.transform"
    version = 1
    summary_text = "Reshape JSON (JMESPath)"
    description = "Select or reshape JSON with a JMESPath expression; the output is the selected value."
    input_schema = {
        "type": "object",
        "required": ["input", "expr"],
        "additionalProperties": False,
        "properties": {
            "input": {"description": "any JSON value"},
            "expr": {"type": "string", "minLength": 1, "description": "a JMESPath expression"},
        },
    }
    output_schema: dict[str, Any] = {}
    side_effect = SideEffect.PURE
    deterministic = True
    cost_model = CostModel(fixed_usd=0.0, latency_ms=0.2)
    default_timeout_s = 10.0
    default_retry = RetryPolicy(max_attempts=1)
    recommended = 1

    def check_args(self, args: dict[str, Any]) -> list[dict[str, str]]:
        # A literal expression that does not parse, or is too deep to parse safely, is the submitter's
        # mistake: catch it at submission, even when the input is a reference.
        expr = args.get("expr")
        if not isinstance(expr, str) or INTERPOLATION.search(expr):
            return []  # missing or not text: the input schema says so; interpolated: judged at run time
        try:
            compile_expr(expr)
        except AosError as exc:
            return [{"path": "args.expr", "code": exc.code, "message": exc.message}]
        return []

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        # the same compiler as submission: an expression that arrives through a reference meets the same
        # limits here, as a failed step instead of a RecursionError in the worker
        try:
            compiled = compile_expr(args["expr"])
        except AosError as exc:
            raise SkillError(exc.code, exc.message) from None
        try:
            return SkillResult(output=compiled.search(args["input"]))
        except jmespath.exceptions.JMESPathError as exc:
            raise SkillError("EXPR_INVALID", f"JMESPath evaluation failed: {exc}") from None


class JsonValidate(Skill):
    name = "json.validate"
    version = 1
    summary_text = "Check JSON with a schema"
    description = "Validate JSON against a JSON Schema; the output says whether it is valid and lists every error."
    input_schema = {
        "type": "object",
        "required": ["input", "schema"],
        "additionalProperties": False,
        "properties": {
            "input": {"description": "any JSON value"},
            "schema": {"type": "object", "description": "a JSON Schema (draft 2020-12)"},
            "raise_on_invalid": {"type": "boolean", "default": False,
                                 "description": "fail the step (JSON_SCHEMA_MISMATCH) when invalid"},
        },
    }
    output_schema = {
        "type": "object",
        "required": ["valid", "errors"],
        "properties": {"valid": {"type": "boolean"}, "errors": {"type": "array"}},
    }
    side_effect = SideEffect.PURE
    deterministic = True
    cost_model = CostModel(fixed_usd=0.0, latency_ms=0.5)
    default_timeout_s = 10.0
    default_retry = RetryPolicy(max_attempts=1)
    recommended = 4

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        # imported here: loading the skills (`aos skills list`, `aos doctor`) need not pay 0.03 s of CPU for it;
        # a worker has it already (aos.runtime.argschema checks every step's args with it)
        import jsonschema

        schema = args["schema"]
        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise SkillError("SKILL_ARGS_INVALID", f"the schema itself is invalid: {exc.message}") from None
        validator = cls(schema)
        errors = [
            {"path": "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in e.absolute_path),
             "message": e.message}
            for e in sorted(validator.iter_errors(args["input"]), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if errors and args.get("raise_on_invalid"):
            raise SkillError("JSON_SCHEMA_MISMATCH", f"{len(errors)} schema error(s); first: {errors[0]['message']}",
                             details={"errors": errors})
        return SkillResult(output={"valid": not errors, "errors": errors})


SKILLS: list[Skill] = [JsonTransform(), JsonValidate()]
