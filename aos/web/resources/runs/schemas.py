"""Schemas of the runs resource. The plan itself is validated by aos.plan (every problem with its path)."""

from __future__ import annotations

import marshmallow as ma


class RunCreateSchema(ma.Schema):
    plan = ma.fields.Dict(required=True, metadata={"description": "The plan (SPEC §3 plan format)."})
    inputs = ma.fields.Dict(load_default=None, metadata={"description": "Overrides of the plan's inputs."})
    agent_id = ma.fields.UUID(load_default=None, metadata={"description": "Run as this agent (its capabilities apply)."})


class RunListArgsSchema(ma.Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(
        ["queued", "running", "succeeded", "failed", "cancelled", "dead_lettered"]))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


class StepErrorSchema(ma.Schema):
    code = ma.fields.String(allow_none=True)
    message = ma.fields.String(allow_none=True)


class BudgetSchema(ma.Schema):
    max_cost_usd = ma.fields.Float(allow_none=True)
    max_tokens = ma.fields.Integer(allow_none=True)
    max_steps = ma.fields.Integer(allow_none=True)
    max_wall_s = ma.fields.Integer(allow_none=True)
    spent_cost_usd = ma.fields.Float()
    spent_tokens = ma.fields.Integer()
    steps_started = ma.fields.Integer()


class StepSchema(ma.Schema):
    id = ma.fields.String(required=True)
    index = ma.fields.Integer()
    skill = ma.fields.String()
    status = ma.fields.String(metadata={"description": "pending, running, succeeded, failed, skipped, not_run"})
    attempts = ma.fields.Integer()
    output = ma.fields.Raw(allow_none=True)
    output_ref = ma.fields.String(allow_none=True, metadata={"description": "Where a large output can be fetched."})
    error = ma.fields.Nested(StepErrorSchema, allow_none=True)
    cost_usd = ma.fields.Float()
    tokens = ma.fields.Integer()
    started_at = ma.fields.String(allow_none=True)
    finished_at = ma.fields.String(allow_none=True)
    duration_ms = ma.fields.Float(allow_none=True)


class RunSummarySchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(allow_none=True)
    status = ma.fields.String(required=True)
    steps_total = ma.fields.Integer()
    next_step = ma.fields.Integer()
    agent_id = ma.fields.String(allow_none=True)
    workflow_id = ma.fields.String(allow_none=True)
    error = ma.fields.Nested(StepErrorSchema, allow_none=True)
    budget = ma.fields.Nested(BudgetSchema)
    plan_hash = ma.fields.String()
    created_at = ma.fields.String(allow_none=True)
    started_at = ma.fields.String(allow_none=True)
    finished_at = ma.fields.String(allow_none=True)


class RunSchema(RunSummarySchema):
    inputs = ma.fields.Dict()
    steps = ma.fields.List(ma.fields.Nested(StepSchema))


class RunListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RunSummarySchema))


class EventSchema(ma.Schema):
    id = ma.fields.Integer()
    type = ma.fields.String()
    step_id = ma.fields.String(allow_none=True)
    data = ma.fields.Dict()
    at = ma.fields.String()


class TimelineSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EventSchema))
