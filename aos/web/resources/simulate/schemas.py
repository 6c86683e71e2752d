"""Schemas of the simulator: per-step and total estimates, budget and capability verdicts."""

from __future__ import annotations

import marshmallow as ma

from aos.web.openapi import ProblemItemSchema
from aos.web.schemas import BodySchema, plan_field


class SimulateSchema(BodySchema):
    plan = plan_field(required=True)
    inputs = ma.fields.Dict(load_default=None, allow_none=True,
                            metadata={"description": "Overrides of the plan's inputs."})
    agent_id = ma.fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "Check the plan against this agent's capabilities."})


class StepEstimateSchema(ma.Schema):
    id = ma.fields.String(required=True)
    skill = ma.fields.String(required=True, metadata={"description": "name@version"})
    model = ma.fields.String(required=True, allow_none=True, metadata={"description": "llm.complete: the model."})
    estimated_cost_usd = ma.fields.Float(required=True)
    estimated_tokens = ma.fields.Integer(required=True)
    estimated_latency_ms = ma.fields.Float(required=True)
    basis = ma.fields.String(required=True, validate=ma.validate.OneOf(["cost_model", "history"]), metadata={
        "description": "cost_model: the skill's own estimate; history: the mean of past successful attempts."})
    samples = ma.fields.Integer(required=True, metadata={"description": "Past attempts the history mean is of."})
    failure_rate = ma.fields.Float(required=True, allow_none=True, metadata={
        "description": "Share of recent finished attempts that failed; null without history."})
    warnings = ma.fields.List(ma.fields.String(), required=True)


class TotalSchema(ma.Schema):
    estimated_cost_usd = ma.fields.Float(required=True)
    estimated_tokens = ma.fields.Integer(required=True)
    estimated_latency_ms = ma.fields.Float(required=True, metadata={"description": "Steps run one after another."})


class BudgetVerdictSchema(ma.Schema):
    verdict = ma.fields.String(required=True, validate=ma.validate.OneOf(["within", "exceeds", "unlimited"]))
    max_cost_usd = ma.fields.Float(required=True, allow_none=True)
    max_tokens = ma.fields.Integer(required=True, allow_none=True)
    max_steps = ma.fields.Integer(required=True, allow_none=True)
    daily_remaining_usd = ma.fields.Float(required=True, allow_none=True, metadata={
        "description": "What is left of the tenant's daily budget today; null without one."})
    problems = ma.fields.List(ma.fields.Nested(ProblemItemSchema), required=True)


class CapabilityVerdictSchema(ma.Schema):
    verdict = ma.fields.String(required=True, validate=ma.validate.OneOf(["allowed", "denied", "not_checked"]))
    problems = ma.fields.List(ma.fields.Nested(ProblemItemSchema), required=True)


class SimulationSchema(ma.Schema):
    plan_hash = ma.fields.String(required=True)
    steps = ma.fields.List(ma.fields.Nested(StepEstimateSchema), required=True)
    total = ma.fields.Nested(TotalSchema, required=True)
    budget = ma.fields.Nested(BudgetVerdictSchema, required=True)
    capabilities = ma.fields.Nested(CapabilityVerdictSchema, required=True)
    warnings = ma.fields.List(ma.fields.String(), required=True)
