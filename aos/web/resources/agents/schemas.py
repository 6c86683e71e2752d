"""Schemas of the agents resource: agents, their capability policy, state and provenance."""

from __future__ import annotations

import marshmallow as ma

from aos.db.models import RUN_STATUSES
from aos.web.pagination import PageArgsSchema, page_of
from aos.web.schemas import BodySchema, timestamp


class CapabilitiesSchema(ma.Schema):
    """An agent's capability policy; an absent key means "not restricted"."""

    allowed_skills = ma.fields.List(ma.fields.String(), metadata={"description": "Skill names it may use."})
    http_hosts = ma.fields.List(ma.fields.String(), metadata={
        "description": "Hosts it may reach: `name`, `*.suffix` or `*`."})
    db_connections = ma.fields.List(ma.fields.String(), metadata={
        "description": "Named postgres.query connections it may use."})
    max_cost_usd = ma.fields.Float(metadata={"description": "The largest budget.max_cost_usd of its runs."})


class AgentCreateSchema(BodySchema):
    name = ma.fields.String(required=True, metadata={"description": "Unique in the tenant; 1 to 100 characters."})
    capabilities = ma.fields.Dict(load_default=None, allow_none=True, metadata={
        "description": "allowed_skills, http_hosts, db_connections (lists of strings), max_cost_usd (number)."})


class AgentSchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    capabilities = ma.fields.Nested(CapabilitiesSchema, required=True)
    state = ma.fields.Dict(required=True)
    created_at = timestamp(required=True, allow_none=True)


AgentPageSchema = page_of(AgentSchema, "AgentPage")


class AgentRunsArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(RUN_STATUSES))


class ProvenanceSchema(ma.Schema):
    """What one run of the agent executed, pinned: plan hash, workflow version, skill versions, spend."""

    run_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True)
    plan_hash = ma.fields.String(required=True)
    workflow_id = ma.fields.String(required=True, allow_none=True)
    workflow_name = ma.fields.String(required=True, allow_none=True)
    workflow_version = ma.fields.Integer(required=True, allow_none=True)
    skills = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True,
                            metadata={"description": "step id -> skill@version"})
    cost_usd = ma.fields.Float(required=True)
    tokens = ma.fields.Integer(required=True)
    created_at = timestamp(required=True, allow_none=True)
    finished_at = timestamp(required=True, allow_none=True)


ProvenancePageSchema = page_of(ProvenanceSchema, "ProvenancePage")


class AgentStateSchema(ma.Schema):
    state = ma.fields.Dict(required=True)
    updated_at = timestamp(required=True, allow_none=True, metadata={"description": "null: never set"})


class AgentStatePutSchema(BodySchema):
    state = ma.fields.Dict(required=True, metadata={"description": "The new state; replaces the old one."})
