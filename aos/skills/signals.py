"""signal.wait and human.approve: steps that wait for a person or an event, without holding a worker.

A waiting skill does not work when its step starts: the engine parks the run (status ``waiting``,
a ``run_waits`` row with the signal's name, the reason, the payload's JSON Schema and a deadline)
and frees the worker. When the signal is delivered (``POST /api/v1/runs/{id}/signals/{name}``) or
the deadline passes, the run is queued again and the same attempt of the step runs once more, now
with ``ctx.signal`` set: the skill turns the delivered payload into the step's output, or fails with
``SIGNAL_TIMEOUT``, which the step's ``on_error`` handles like any failure. The delivered signal is
the call's raw response, so a golden file records it and a replay answers from it without waiting.
"""

from __future__ import annotations

import re
from typing import Any

from aos.skills.base import RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult

SIGNAL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
MAX_WAIT_S = 366 * 86400  # a year and a day: a deadline is a date, not "forever"
APPROVAL_SIGNAL = "approval"
APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["approved"], "additionalProperties": False,
    "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string", "maxLength": 4000},
                   "by": {"type": "string", "maxLength": 200}},
}
_TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S,
            "description": "seconds to wait; past them the step fails with SIGNAL_TIMEOUT (unset: no deadline)"}


def schema_problems(schema: Any, path: str) -> list[dict[str, str]]:
    """Whether ``schema`` is a JSON Schema a payload can be checked against (draft 2020-12)."""
    import jsonschema  # here, not on loading the skills: as in aos.skills.json_skills

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [{"path": path, "code": "SKILL_ARGS_INVALID", "message": f"not a valid JSON Schema: {exc.message}"}]
    return []


def payload_problems(schema: dict[str, Any] | None, payload: Any) -> list[dict[str, str]]:
    """Every problem of a signal's payload against the wait's schema, each with its JSON path."""
    if schema is None:
        return []
    import jsonschema  # here, not on loading the skills: as in aos.skills.json_skills

    problems = []
    for err in sorted(jsonschema.Draft202012Validator(schema).iter_errors(payload),
                      key=lambda e: list(map(str, e.absolute_path))):
        where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err.absolute_path)
        problems.append({"path": f"$.data{where}", "code": "SIGNAL_PAYLOAD_INVALID", "message": err.message})
    return problems


class WaitingSkill(Skill):
    """A skill whose step parks the run until a signal (``wait_spec``) and then reads it (``run``)."""

    waits_for_signal = True
    deterministic = False          # the payload is an input from outside: recorded, replayed
    side_effect = SideEffect.PURE
    default_timeout_s = 30.0       # the step's own work once the signal is there, not the wait
    default_retry = RetryPolicy(max_attempts=1)

    def _signal(self, ctx: SkillContext) -> Any:
        sig = ctx.signal
        if sig is None:
            raise SkillError("INTERNAL_ERROR", f"{self.ref} ran without its signal")
        if sig.get("expired"):
            raise SkillError("SIGNAL_TIMEOUT", f"no signal {sig['name']!r} arrived before the deadline "
                             f"{sig.get('deadline')}", details={"signal": sig["name"], "deadline": sig.get("deadline")})
        return sig.get("payload")


class SignalWait(WaitingSkill):
    name = "signal.wait"
    description = ("Wait for a named signal (an event, a person's answer) without holding a worker; the "
                   "signal's payload, checked against an optional JSON Schema, becomes the step's output. "
                   "Past timeout_s the step fails with SIGNAL_TIMEOUT.")
    summary_text = "Wait for a named signal"
    input_schema = {
        "type": "object", "required": ["signal"], "additionalProperties": False,
        "properties": {
            "signal": {"type": "string", "pattern": SIGNAL_NAME.pattern,
                       "description": "the signal's name, as POST /runs/{id}/signals/{name} sends it"},
            "reason": {"type": "string", "maxLength": 2000, "description": "why the run waits (shown to people)"},
            "schema": {"type": "object", "description": "a JSON Schema the payload must match"},
            "timeout_s": _TIMEOUT,
        },
    }

    def check_args(self, args: dict[str, Any]) -> list[dict[str, str]]:
        return schema_problems(args["schema"], "args.schema") if "schema" in args else []

    def wait_spec(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"signal": args["signal"], "reason": args.get("reason"), "schema": args.get("schema"),
                "timeout_s": args.get("timeout_s")}

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        payload = self._signal(ctx)
        return SkillResult(output=payload, raw={"signal": args["signal"], "payload": payload})


class HumanApprove(WaitingSkill):
    name = "human.approve"
    description = ("Wait for a person to approve or reject (signal `approval` with {\"approved\": true|false, "
                   "\"comment\", \"by\"}); approval is the step's output, a rejection fails the step with "
                   "APPROVAL_REJECTED. Past timeout_s the step fails with SIGNAL_TIMEOUT.")
    summary_text = "Ask a person to approve"
    input_schema = {
        "type": "object", "required": ["reason"], "additionalProperties": False,
        "properties": {
            "reason": {"type": "string", "minLength": 1, "maxLength": 2000,
                       "description": "what the person approves (shown to them)"},
            "signal": {"type": "string", "pattern": SIGNAL_NAME.pattern, "default": APPROVAL_SIGNAL},
            "timeout_s": _TIMEOUT,
        },
    }

    def wait_spec(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"signal": args.get("signal", APPROVAL_SIGNAL), "reason": args["reason"], "schema": APPROVAL_SCHEMA,
                "timeout_s": args.get("timeout_s")}

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        payload = self._signal(ctx)
        raw = {"signal": args.get("signal", APPROVAL_SIGNAL), "payload": payload}
        if not payload.get("approved"):
            by = f" by {payload['by']}" if payload.get("by") else ""
            comment = f": {payload['comment']}" if payload.get("comment") else ""
            raise SkillError("APPROVAL_REJECTED", f"rejected{by}{comment}", details={"signal": raw})
        return SkillResult(output=payload, raw=raw)


SKILLS: list[Skill] = [SignalWait(), HumanApprove()]
