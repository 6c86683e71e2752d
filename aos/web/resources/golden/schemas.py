"""Schemas of the golden resource. The document itself is checked by aos.golden.verify (signature, hashes)."""

from __future__ import annotations

import marshmallow as ma


class GoldenDocumentSchema(ma.Schema):
    format = ma.fields.String(required=True, metadata={"description": "aos.golden/1"})
    key_id = ma.fields.String(required=True, metadata={"description": "Id of the key that signed."})
    hash = ma.fields.String(required=True, metadata={"description": "SHA-256 of the canonical body."})
    signature = ma.fields.String(required=True, metadata={"description": "HMAC-SHA256 (hex), see docs/golden.md."})
    body = ma.fields.Dict(required=True, metadata={"description": "Plan, inputs, steps with their hashes."})


class GoldenVerifySchema(ma.Schema):
    document = ma.fields.Dict(required=True, metadata={"description": "A golden document, as recorded."})


class GoldenReplaySchema(ma.Schema):
    document = ma.fields.Dict(required=True, metadata={"description": "A golden document, as recorded."})
    plan = ma.fields.Dict(load_default=None, metadata={
        "description": "Replay this plan instead of the recorded one, against the same recording "
                       "(does an edited plan still give the recorded results?)."})
    timeout_s = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=0, max=3600), metadata={
        "description": "How long to wait for the replay run (default AOS_GOLDEN_REPLAY_TIMEOUT_S)."})


class VerifiedSchema(ma.Schema):
    valid = ma.fields.Boolean(required=True)
    key_id = ma.fields.String()
    hash = ma.fields.String()
    source_run_id = ma.fields.String(allow_none=True)
    steps = ma.fields.Integer()


class StepVerdictSchema(ma.Schema):
    index = ma.fields.Integer()
    id = ma.fields.String(allow_none=True)
    identical = ma.fields.Boolean()
    recorded_hash = ma.fields.String(allow_none=True)
    replayed_hash = ma.fields.String(allow_none=True)


class DivergenceSchema(ma.Schema):
    step_index = ma.fields.Integer()
    step_id = ma.fields.String(allow_none=True)
    path = ma.fields.String(metadata={"description": "JSON path inside the step, e.g. args.expr"})
    recorded = ma.fields.Raw(allow_none=True)
    replayed = ma.fields.Raw(allow_none=True)


class ReplayReportSchema(ma.Schema):
    run_id = ma.fields.String(metadata={"description": "The replay run (GET /runs/{run_id} shows it)."})
    status = ma.fields.String(metadata={"description": "The replay run's final status."})
    document_hash = ma.fields.String()
    source_run_id = ma.fields.String(allow_none=True)
    identical = ma.fields.Boolean(required=True)
    steps = ma.fields.List(ma.fields.Nested(StepVerdictSchema))
    divergence = ma.fields.Nested(DivergenceSchema, allow_none=True,
                                  metadata={"description": "The first divergence, or null."})
