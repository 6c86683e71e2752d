"""The plan format as a JSON Schema (OpenAPI 3.0 dialect), built from the constants ``parse_plan`` checks.

The API documents every ``plan`` field with it, so a client (and schemathesis) knows the shape the server
accepts. What no JSON Schema can say stays with ``parse_plan`` and has its own code: step ids unique in the
plan, references to inputs and earlier steps (REF_UNRESOLVED), expressions that parse (EXPR_INVALID) and are
not too complex (EXPR_TOO_COMPLEX), values not nested too deeply (JSON_TOO_DEEP), args that match the skill's
input schema once references are resolved (SKILL_ARGS_INVALID), a ``max_steps`` at least the number of steps
(BUDGET_EXCEEDED).
"""

from __future__ import annotations

from typing import Any

from aos.limits import MAX_STEPS
from aos.plan.model import (
    BUDGET_MAX,
    CONCURRENCY_KEY_LENGTH,
    CONCURRENCY_KEY_PATTERN,
    CONCURRENCY_MAX,
    ESCALATE_KEYS,
    NAME_LENGTH,
    ON_ERROR_MODES,
    RETRY_RANGES,
    STEP_ID,
    TIMEOUT_RANGE,
)
from aos.skills.registry import SkillRegistry
from aos.skills.signals import MAX_WAIT_S, SIGNAL_NAME

ANY: dict[str, Any] = {}  # any JSON value


def _bounded(kind: str, minimum: float, maximum: float) -> dict[str, Any]:
    return {"type": kind, "minimum": minimum, "maximum": maximum}


def concurrency_json_schema() -> dict[str, Any]:
    """A plan's or an agent's ``concurrency`` (docs/concurrency.md)."""
    return {"type": "object", "nullable": True, "required": ["limit"], "additionalProperties": False,
            "description": "At most `limit` runs at once; with `key` (an expression over the run's inputs, "
                           "e.g. `inputs.customer`) at most `limit` per value. Runs over it wait in `queued`.",
            "properties": {"limit": _bounded("integer", 1, CONCURRENCY_MAX),
                           "key": {"type": "string", "minLength": 1, "maxLength": CONCURRENCY_KEY_LENGTH,
                                   "pattern": CONCURRENCY_KEY_PATTERN}}}


def plan_json_schema(registry: SkillRegistry) -> dict[str, Any]:
    """The JSON Schema of a plan whose skills come from ``registry``."""
    skill = {"type": "string", "enum": registry.refs(),
             "description": "A registered skill: `name` (its latest version) or `name@version`."}
    budget = {"type": "object", "additionalProperties": False, "properties": {
        key: _bounded("number" if key == "max_cost_usd" else "integer", 0, BUDGET_MAX[key])
        for key in sorted(BUDGET_MAX)}}
    retry = {"type": "object", "nullable": True, "additionalProperties": False, "properties": {
        key: _bounded("integer" if key == "max_attempts" else "number", *RETRY_RANGES[key])
        for key in RETRY_RANGES}}
    others = [m for m in ON_ERROR_MODES if m not in ("FALLBACK", "ESCALATE")]
    no_escalate_keys = {"not": {"anyOf": [{"required": [k]} for k in ESCALATE_KEYS]}}
    on_error = {
        "type": "object", "nullable": True, "required": ["mode"], "additionalProperties": False,
        "properties": {"mode": {"type": "string", "enum": list(ON_ERROR_MODES)},
                       "fallback": {"type": "object", "nullable": True},
                       "signal": {"type": "string", "pattern": SIGNAL_NAME.pattern},
                       "timeout_s": _bounded("number", TIMEOUT_RANGE[0], MAX_WAIT_S),
                       "schema": {"type": "object", "description": "A JSON Schema the person's payload must match."}},
        "anyOf": [
            {"properties": {"mode": {"enum": ["FALLBACK"]},
                            "fallback": {"type": "object", "required": ["skill"],
                                         "properties": {"skill": skill, "args": {"type": "object"}}}},
             "required": ["fallback"], **no_escalate_keys},
            {"properties": {"mode": {"enum": ["ESCALATE"]}, "fallback": {"enum": [None], "nullable": True}}},
            {"properties": {"mode": {"enum": others}, "fallback": {"enum": [None], "nullable": True}},
             **no_escalate_keys},
        ],
        "description": "What happens after the last attempt: ABORT, SKIP, RETRY (try a permanent failure again "
                       "too, while attempts are left), FALLBACK (takes a `fallback`), ESCALATE (the run waits "
                       "for a person; takes `signal`, `timeout_s`, `schema`).",
    }
    step = {
        "type": "object", "required": ["id", "skill"], "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": STEP_ID.pattern,
                   "description": "Unique in the plan: letters, digits and `_`, not starting with a digit."},
            "skill": skill,
            "args": {"type": "object", "description": "The skill's args; values may hold references."},
            "retry": retry,
            "timeout_s": _bounded("number", *TIMEOUT_RANGE),
            "on_error": on_error,
            "description": ANY,
        },
    }
    return {
        "type": "object", "required": ["steps"], "additionalProperties": False,
        "description": "A plan (docs/plans.md): named inputs, a budget and ordered steps.",
        "properties": {
            "name": {"type": "string", "nullable": True, "minLength": NAME_LENGTH[0], "maxLength": NAME_LENGTH[1]},
            "description": ANY,
            "inputs": {"type": "object", "description": "Named inputs, any JSON values."},
            "budget": budget,
            "concurrency": concurrency_json_schema(),
            "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": step},
        },
    }
