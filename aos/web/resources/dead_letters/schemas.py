"""Schemas of the dead-letters resource (admin scope)."""

from __future__ import annotations

import marshmallow as ma

from aos.db.models import DEAD_LETTER_KINDS, DEAD_LETTER_STATUSES
from aos.web.pagination import PageArgsSchema, page_of
from aos.web.schemas import timestamp


class DeadLetterListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(DEAD_LETTER_STATUSES),
                              metadata={"description": "Only dead letters with this status."})
    kind = ma.fields.String(validate=ma.validate.OneOf(DEAD_LETTER_KINDS),
                            metadata={"description": "Only dead letters of this kind: step, outbox or task."})


class DeadLetterErrorSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Failure-catalog code of the last failure."})
    message = ma.fields.String(allow_none=True)
    category = ma.fields.String(metadata={"description": "The code's catalog category."})
    retryable = ma.fields.Boolean(metadata={"description": "Whether reconciliation may re-drive it by itself."})


class ReplayInfoSchema(ma.Schema):
    result = ma.fields.String(metadata={"description": "requeued, redriven (by reconciliation) or superseded."})
    replayed_at = timestamp()


class DeadLetterSchema(ma.Schema):
    """Work that ran out of retries: a step, an outbox delivery (webhook) or a crashed task."""

    id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, metadata={"description": "step, outbox or task."})
    status = ma.fields.String(required=True, metadata={"description": "open, replayed, discarded or resolved."})
    run_id = ma.fields.String(allow_none=True)
    step_id = ma.fields.String(allow_none=True)
    error = ma.fields.Nested(DeadLetterErrorSchema, required=True)
    attempts = ma.fields.Integer(metadata={"description": "Attempts made before it was dead-lettered."})
    payload = ma.fields.Dict(metadata={"description": "What replay needs: the run and step, the outbox row and "
                                                      "its event, or the task and its arguments."})
    created_at = timestamp()
    resolved_at = timestamp(allow_none=True)
    replay = ma.fields.Nested(ReplayInfoSchema, allow_none=True)


DeadLetterPageSchema = page_of(DeadLetterSchema, "DeadLetterPage")


class ReplayResultSchema(ma.Schema):
    dead_letter = ma.fields.Nested(DeadLetterSchema, required=True)
    result = ma.fields.String(required=True, metadata={
        "description": "requeued: the work runs again; superseded: nothing was left to do (the dead letter is "
                       "resolved); redriven: reconciliation re-drove it."})
    replayed_now = ma.fields.Boolean(required=True, metadata={
        "description": "false when this dead letter had been replayed before: nothing happened this time."})
