"""Schemas of the golden resource. The document itself is checked by aos.golden.verify (signature, hashes)."""

from __future__ import annotations

import marshmallow as ma

from aos.golden import FORMAT
from aos.web.schemas import BodySchema, plan_field

# the longest a request may hold an API thread waiting for a replay run: past it, 202 and a report to poll
MAX_WAIT_S = 60.0


class GoldenDocumentSchema(ma.Schema):
    """A golden document: canonical JSON, signed (docs/golden.md)."""

    format = ma.fields.String(required=True, validate=ma.validate.OneOf([FORMAT]),
                              metadata={"description": "The format version."})
    key_id = ma.fields.String(required=True, metadata={"description": "Id of the key that signed."})
    hash = ma.fields.String(required=True, metadata={"description": "SHA-256 of the canonical body."})
    signature = ma.fields.String(required=True, metadata={"description": "HMAC-SHA256 (hex), see docs/golden.md."})
    body = ma.fields.Dict(required=True, metadata={"description": "Plan, inputs, steps with their hashes."})


_DOCUMENT = {"description": "A golden document, as recorded.", "allOf": [{"$ref": "#/components/schemas/GoldenDocument"}]}


class GoldenVerifySchema(BodySchema):
    document = ma.fields.Dict(required=True, metadata=_DOCUMENT)


class GoldenReplaySchema(BodySchema):
    document = ma.fields.Dict(required=True, metadata=_DOCUMENT)
    plan = plan_field("Replay this plan instead of the recorded one, against the same recording "
                      "(does an edited plan still give the recorded results?).", load_default=None)
    timeout_s = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=0, max=MAX_WAIT_S), metadata={
        "description": f"How long this request waits for the replay run (at most {MAX_WAIT_S:.0f} s; default "
                       "AOS_GOLDEN_REPLAY_TIMEOUT_S); past it the answer is 202 and the run goes on."})


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


class ReplayPendingSchema(ma.Schema):
    """A replay whose run is not final yet."""

    run_id = ma.fields.String(required=True, metadata={"description": "The replay run."})
    status = ma.fields.String(required=True, metadata={"description": "queued or running"})
    report = ma.fields.String(required=True, metadata={
        "description": "POST the same document here for the comparison once the run is final."})
    run = ma.fields.String(required=True, metadata={"description": "The replay run's resource."})
