"""Schemas of the workflows resource: stored, versioned plans addressed by name."""

from __future__ import annotations

import marshmallow as ma

from aos.services.workflows import NAME, NAME_RULE
from aos.web.pagination import page_of
from aos.web.schemas import BodySchema, FullMatch, plan_field, timestamp


class WorkflowCreateSchema(BodySchema):
    name = ma.fields.String(required=True, validate=FullMatch(NAME, error=NAME_RULE),
                            metadata={"description": f"The workflow's name: {NAME_RULE}."})
    plan = plan_field(required=True)


class WorkflowRunSchema(BodySchema):
    version = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=2**31 - 1),
                                metadata={"description": "The version to run (default: the latest)."})
    inputs = ma.fields.Dict(load_default=None, allow_none=True,
                            metadata={"description": "Overrides of the plan's inputs."})
    agent_id = ma.fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "Run as this agent (its capabilities apply)."})


class WorkflowSchema(ma.Schema):
    id = ma.fields.String(required=True, metadata={"description": "The id of this version."})
    name = ma.fields.String(required=True)
    version = ma.fields.Integer(required=True)
    plan = ma.fields.Dict(required=True)
    plan_hash = ma.fields.String(required=True)
    created_at = timestamp(required=True, allow_none=True)


WorkflowPageSchema = page_of(WorkflowSchema, "WorkflowPage")


class WorkflowVersionsSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(WorkflowSchema), required=True)
