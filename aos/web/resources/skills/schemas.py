"""Schemas of the skills resource."""

from __future__ import annotations

import marshmallow as ma


class SkillListArgsSchema(ma.Schema):
    recommended = ma.fields.Boolean(load_default=False, metadata={
        "description": "true: only the skills recommended to new users, best first."})


class SkillSchema(ma.Schema):
    name = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    ref = ma.fields.String(required=True, metadata={"description": "name@version, as pinned by runs."})
    description = ma.fields.String(required=True)
    deterministic = ma.fields.Boolean(required=True, metadata={
        "description": "false: golden files record its responses for replay."})
    side_effect = ma.fields.String(required=True, metadata={"description": "pure, idempotent or external"})
    recommended = ma.fields.Boolean(required=True)
    rank = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "Recommendation order (1 first); null when not recommended."})
    args_schema = ma.fields.Dict(required=True, metadata={"description": "JSON Schema of the step's args."})
    output_schema = ma.fields.Dict(required=True, metadata={"description": "JSON Schema of its output."})
    default_timeout_s = ma.fields.Float(required=True)


class SkillListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SkillSchema), required=True)
