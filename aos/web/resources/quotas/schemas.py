"""Schemas of /quotas."""

from __future__ import annotations

import marshmallow as ma

from aos.web.schemas import BodySchema, timestamp

_RATE = "Request units per minute (expensive operations cost more; docs/security.md)"


class TenantRefSchema(ma.Schema):
    id = ma.fields.UUID(required=True)
    name = ma.fields.String(required=True)


class LimitsSchema(ma.Schema):
    key_requests_per_minute = ma.fields.Integer(required=True, metadata={"description": f"{_RATE}, per API key or "
                                                                                        "token subject."})
    tenant_requests_per_minute = ma.fields.Integer(required=True, metadata={"description": f"{_RATE}, for all of "
                                                                                           "the tenant's callers."})
    daily_requests = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "API requests a "
                                                                                               "UTC day; null: none."})
    daily_runs = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "Runs submitted a day."})
    daily_tokens = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "LLM tokens a day: past it, new runs are refused (running runs finish)."})
    daily_budget_usd = ma.fields.Float(required=True, allow_none=True, metadata={
        "description": "Cost a day: every step reserves against it; a budget.warning at 80 %."})


class OwnRatesSchema(ma.Schema):
    key_requests_per_minute = ma.fields.Integer(required=True, allow_none=True)
    tenant_requests_per_minute = ma.fields.Integer(required=True, allow_none=True)


class UsageSchema(ma.Schema):
    day = ma.fields.String(required=True, metadata={"description": "The UTC day counted (YYYY-MM-DD)."})
    cost_usd = ma.fields.Float(required=True)
    reserved_cost_usd = ma.fields.Float(required=True, metadata={"description": "Reserved by steps running now."})
    tokens = ma.fields.Integer(required=True)
    runs = ma.fields.Integer(required=True)
    requests = ma.fields.Integer(required=True, allow_none=True, metadata={
        "description": "API requests today (null: the rate limiter is off or unreachable)."})


class QuotasSchema(ma.Schema):
    tenant = ma.fields.Nested(TenantRefSchema, required=True)
    limits = ma.fields.Nested(LimitsSchema, required=True)
    own = ma.fields.Nested(OwnRatesSchema, required=True, metadata={
        "description": "The tenant's own rates; null: the deployment's default applies."})
    usage = ma.fields.Nested(UsageSchema, required=True)
    resets_at = timestamp(required=True, metadata={"description": "When the daily quotas start again (UTC midnight)."})
    budget_warned_at = timestamp(required=True, allow_none=True, metadata={
        "description": "When today's spend reached 80 % of the daily budget (its budget.warning was sent)."})


class QuotasQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    tenant = ma.fields.String(validate=ma.validate.Length(min=1, max=100), metadata={
        "description": "Another tenant's name (operator scope); default: the caller's own tenant."})


def _limit(description: str) -> ma.fields.Integer:
    return ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=2**31 - 1),
                             metadata={"description": f"{description}; null removes it."})


class QuotasUpdateSchema(BodySchema):
    tenant = ma.fields.String(validate=ma.validate.Length(min=1, max=100), metadata={
        "description": "The tenant to change, by name; default: the caller's own tenant."})
    key_requests_per_minute = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=1, max=2**31 - 1),
                                                metadata={"description": f"{_RATE}; null: the deployment default."})
    tenant_requests_per_minute = ma.fields.Integer(allow_none=True,
                                                   validate=ma.validate.Range(min=1, max=2**31 - 1),
                                                   metadata={"description": f"{_RATE}; null: the default."})
    daily_requests = _limit("API requests a UTC day")
    daily_runs = _limit("Runs submitted a UTC day")
    daily_tokens = ma.fields.Integer(allow_none=True, validate=ma.validate.Range(min=0, max=2**62),
                                     metadata={"description": "LLM tokens a UTC day; null removes it."})
    daily_budget_usd = ma.fields.Float(allow_none=True, validate=ma.validate.Range(min=0, max=1e9),
                                       metadata={"description": "Cost a UTC day (USD); null removes it."})
