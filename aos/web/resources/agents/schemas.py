"""Schemas of the agents resource: agents, their capability policy, state and provenance."""

from __future__ import annotations

import marshmallow as ma

from aos.db.models import RUN_STATUSES
from aos.plan.model import CONCURRENCY_KEY_LENGTH, CONCURRENCY_KEY_PATTERN, CONCURRENCY_MAX
from aos.services.agents import NAME, NAME_LENGTH, NAME_RULE
from aos.web.pagination import PageArgsSchema, page_of
from aos.web.schemas import BodySchema, FullMatch, timestamp


def _names(description: str) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1)), metadata={"description": description})


class ConcurrencySchema(ma.Schema):
    """At most ``limit`` of the agent's runs at once; with ``key`` (an expression over the run's inputs,
    e.g. ``inputs.customer``) at most ``limit`` per value. Runs over it wait in ``queued``."""

    limit = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=CONCURRENCY_MAX))
    key = ma.fields.String(validate=[ma.validate.Length(min=1, max=CONCURRENCY_KEY_LENGTH),
                                     ma.validate.Regexp(CONCURRENCY_KEY_PATTERN,
                                                        error="an expression over the run's inputs, e.g. "
                                                              "inputs.customer")])


class CapabilitiesSchema(ma.Schema):
    """An agent's capability policy; an absent key means "not restricted"."""

    allowed_skills = _names("Skill names it may use.")
    http_hosts = _names("Hosts it may reach: `name`, `*.suffix` or `*`.")
    db_connections = _names("Named postgres.query connections it may use.")
    max_cost_usd = ma.fields.Float(validate=ma.validate.Range(min=0), metadata={
        "description": "The largest budget.max_cost_usd of its runs."})
    concurrency = ma.fields.Nested(ConcurrencySchema, metadata={
        "description": "At most `limit` of its runs at once (per value of `key`, when given)."})


class AgentCreateSchema(BodySchema):
    name = ma.fields.String(required=True, validate=[ma.validate.Length(*NAME_LENGTH), FullMatch(NAME, error=NAME_RULE)],
                            metadata={"description": f"Unique in the tenant: {NAME_RULE}."})
    capabilities = ma.fields.Nested(CapabilitiesSchema, load_default=None, allow_none=True, metadata={
        "description": "What the agent may do; an absent key means not restricted."})


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
