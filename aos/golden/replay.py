"""A non-deterministic skill during a golden replay: it answers from the recorded call, never calls out.

The engine wraps the skill of every non-deterministic call of a replay run in a
``ReplayedSkill`` holding the recorded call of that step, attempt and role
(primary or fallback). Arguments are still validated against the real skill's
schema by the engine; then:
- no recorded call: the step fails with GOLDEN_REPLAY_MISSING (the replay took a
  path the recording never took, e.g. one more attempt) — nothing is called;
- a recorded failure: the same failure again (code, message, details, usage), so
  the catalog, retries and fallbacks decide exactly as they did;
- a recorded success: the real skill's ``replay`` turns the recorded raw
  response into its output again (``Skill.replay``), so a change in how a skill
  reads a response shows up as a divergence.
"""

from __future__ import annotations

from typing import Any

from aos.skills.base import Skill, SkillContext, SkillError, SkillResult
from aos.values import Usage

ROLES = ("primary", "fallback")


def _usage(outcome: dict[str, Any]) -> Usage:
    u = outcome.get("usage") or {}
    return Usage(cost_usd=float(u.get("cost_usd") or 0.0), input_tokens=int(u.get("input_tokens") or 0),
                 output_tokens=int(u.get("output_tokens") or 0))


class ReplayedSkill(Skill):
    def __init__(self, skill: Skill, call: dict[str, Any] | None) -> None:
        self.skill = skill
        self.call = call
        # what the engine reads of a skill: the real one's identity, schema and policies
        self.name, self.version, self.description = skill.name, skill.version, skill.description
        self.input_schema, self.output_schema = skill.input_schema, skill.output_schema
        self.side_effect, self.deterministic = skill.side_effect, skill.deterministic
        self.cost_model, self.default_timeout_s = skill.cost_model, skill.default_timeout_s
        self.default_retry, self.recommended = skill.default_retry, skill.recommended

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        if self.call is None:
            raise SkillError("GOLDEN_REPLAY_MISSING",
                             f"the recording has no response of {self.ref} for step {ctx.step_id!r} attempt "
                             f"{ctx.attempt}; a replay never calls a non-deterministic skill for real",
                             details={"step_id": ctx.step_id, "attempt": ctx.attempt, "skill": self.ref})
        outcome = self.call.get("outcome") or {}
        if outcome.get("status") != "ok":
            err = outcome.get("error") or {}
            raise SkillError(str(err.get("code") or "GOLDEN_REPLAY_MISSING"), str(err.get("message") or ""),
                             details=dict(err.get("details") or {}), usage=_usage(outcome))
        recorded = SkillResult(output=outcome.get("output"), usage=_usage(outcome), raw=self.call.get("raw"))
        return self.skill.replay(args, recorded, ctx)
