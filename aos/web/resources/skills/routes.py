"""Skills: the registry's versioned units of work, with the JSON Schema of their args."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from aos.skills.base import Skill
from aos.skills.registry import default_registry
from aos.web.access import require_scopes
from aos.web.auth import ProtectedBlueprint
from aos.web.resources.skills.schemas import SkillListArgsSchema, SkillListSchema

blp = ProtectedBlueprint("skills", __name__, url_prefix="/api/v1/skills", description="Skills")
require_scopes(blp)


def skill_view(skill: Skill) -> dict[str, Any]:
    return {"name": skill.name, "version": skill.version, "ref": skill.ref, "description": skill.description,
            "deterministic": skill.deterministic, "side_effect": str(skill.side_effect),
            "recommended": skill.recommended is not None, "rank": skill.recommended,
            "args_schema": skill.input_schema, "output_schema": skill.output_schema,
            "default_timeout_s": float(skill.default_timeout_s)}


@blp.route("")
class Skills(MethodView):
    @blp.arguments(SkillListArgsSchema, location="query")
    @blp.response(200, SkillListSchema)
    def get(self, args):  # noqa: ANN001, ANN201
        """Every skill (by name and version), or with `recommended=true` the ones for new users, best first."""
        registry = default_registry()
        if args["recommended"]:
            skills = registry.recommended()
        else:
            skills = sorted(registry.all(), key=lambda s: (s.name, s.version))
        return {"items": [skill_view(s) for s in skills]}
