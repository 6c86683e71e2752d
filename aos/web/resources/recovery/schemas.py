"""Schemas of the recovery resource: suggestions of a failed run, feedback, apply, patterns, quota, settings."""

from __future__ import annotations

import marshmallow as ma

from aos.db.models import RECOVERY_LAYERS, SUGGESTION_STATUSES
from aos.runtime.catalog import RecoveryMode
from aos.web.schemas import BodySchema, timestamp

MODES = [str(m) for m in RecoveryMode]


class SuggestionSchema(ma.Schema):
    """A recovery suggestion for one failure of a run's step."""

    id = ma.fields.String(required=True)
    run_id = ma.fields.String(required=True)
    step_id = ma.fields.String(required=True)
    step_index = ma.fields.Integer(required=True)
    error_code = ma.fields.String(required=True, metadata={"description": "The failure's catalog code."})
    signature = ma.fields.String(required=True, metadata={"description": "SHA-256 of code, skill and normalised "
                                                                        "message."})
    layer = ma.fields.String(required=True, validate=ma.validate.OneOf(RECOVERY_LAYERS), metadata={
        "description": "Who answered: cache (same signature), vector (a similar pattern), llm (newly written) or "
                       "catalog (the code's own advice: quota spent or an invalid LLM answer)."})
    mode = ma.fields.String(required=True, validate=ma.validate.OneOf(MODES))
    parameters = ma.fields.Dict(required=True, metadata={
        "description": "delay_s, timeout_s, max_attempts, backoff_s, fallback_skill or args, as suggested."})
    explanation = ma.fields.String(required=True)
    confidence = ma.fields.Float(required=True)
    similarity = ma.fields.Float(allow_none=True, metadata={"description": "Cosine similarity (vector layer)."})
    pattern_id = ma.fields.Integer(allow_none=True)
    success_rate = ma.fields.Float(allow_none=True, metadata={
        "description": "Share of the pattern's applied suggestions whose step then succeeded (null: never applied)."})
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(SUGGESTION_STATUSES))
    helpful = ma.fields.Boolean(allow_none=True)
    applied_by = ma.fields.String(allow_none=True, metadata={"description": "person or auto."})
    applied_at = timestamp(allow_none=True)
    settled_at = timestamp(allow_none=True)
    metadata = ma.fields.Dict(required=True, metadata={
        "description": "How it was made: provider, model, `code: QUOTA_EXCEEDED` and `quota_exceeded` when a quota "
                       "was spent, `discarded` problems of an invalid LLM answer, `escalated_pattern`."})
    created_at = timestamp()
    apply_command = ma.fields.String(metadata={"description": "The CLI command that applies it."})


class SuggestionListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SuggestionSchema), required=True)


class FeedbackSchema(BodySchema):
    helpful = ma.fields.Boolean(required=True, truthy={True}, falsy={False},
                                metadata={"description": "Whether the suggestion helped (false counts against its "
                                                         "pattern when it was not applied)."})
    note = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=2000),
                            metadata={"description": "Free text, kept sanitised."})


class PatternSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    error_code = ma.fields.String(required=True)
    skill = ma.fields.String(required=True)
    signature = ma.fields.String(required=True)
    message = ma.fields.String(required=True, metadata={"description": "The normalised, sanitised message."})
    recovery = ma.fields.Dict(required=True, metadata={"description": "mode, parameters, explanation, confidence."})
    source = ma.fields.String(required=True, metadata={"description": "offline or llm."})
    success_count = ma.fields.Integer(required=True)
    failure_count = ma.fields.Integer(required=True)
    success_rate = ma.fields.Float(allow_none=True)
    escalated = ma.fields.Boolean(required=True, metadata={
        "description": "Under AOS_RECOVERY_SUCCESS_FLOOR after AOS_RECOVERY_MIN_USES: no longer served."})


class PatternListArgsSchema(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
    code = ma.fields.String(load_default=None, validate=ma.validate.Regexp(r"^[A-Z][A-Z0-9_]+$"),
                            metadata={"description": "Only patterns of this catalog code."})


class PatternListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(PatternSchema), required=True)


class QuotaUseSchema(ma.Schema):
    limit = ma.fields.Integer(required=True)
    calls = ma.fields.Integer(required=True)
    refused = ma.fields.Integer(required=True)
    remaining = ma.fields.Integer(required=True)
    tokens = ma.fields.Integer(required=True)
    cost_usd = ma.fields.Float(required=True)
    code = ma.fields.String(allow_none=True, metadata={"description": "QUOTA_EXCEEDED when today's calls are spent."})


class QuotaKindsSchema(ma.Schema):
    embedding = ma.fields.Nested(QuotaUseSchema, required=True)
    llm = ma.fields.Nested(QuotaUseSchema, required=True)


class QuotaSchema(ma.Schema):
    day = ma.fields.String(required=True, metadata={"description": "The UTC day counted."})
    quotas = ma.fields.Nested(QuotaKindsSchema, required=True)


class RecoverySettingsSchema(ma.Schema):
    auto_apply = ma.fields.Boolean(required=True)
    embedding_quota = ma.fields.Integer(allow_none=True)
    llm_quota = ma.fields.Integer(allow_none=True)


class RecoverySettingsUpdateSchema(BodySchema):
    auto_apply = ma.fields.Boolean(truthy={True}, falsy={False}, metadata={
        "description": "Apply safe suggestions (a retry with changed timing) by themselves."})
    embedding_quota = ma.fields.Integer(allow_none=True, strict=True, validate=ma.validate.Range(min=0, max=10**9),
                                        metadata={"description": "Embedding calls per day; null: the default."})
    llm_quota = ma.fields.Integer(allow_none=True, strict=True, validate=ma.validate.Range(min=0, max=10**9),
                                  metadata={"description": "LLM suggestion calls per day; null: the default."})
