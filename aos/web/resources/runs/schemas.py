"""Schemas of the runs resource. The plan itself is validated by aos.plan (every problem with its path)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma

from aos.db.models import RUN_STATUSES
from aos.errors import AosError
from aos.redaction import redact_args, redact_value
from aos.services.workflows import NAME as WORKFLOW_NAME
from aos.services.workflows import NAME_RULE
from aos.skills.registry import default_registry
from aos.web.pagination import PageArgsSchema, page_of
from aos.web.schemas import BodySchema, FullMatch, plan_field, timestamp

_BIGINT = 2**63 - 1


class RunCreateSchema(BodySchema):
    plan = plan_field(required=True)
    inputs = ma.fields.Dict(load_default=None, allow_none=True,
                            metadata={"description": "Overrides of the plan's inputs."})
    agent_id = ma.fields.UUID(load_default=None, allow_none=True,
                              metadata={"description": "Run as this agent (its capabilities apply)."})


class RunListArgsSchema(PageArgsSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(RUN_STATUSES))
    agent_id = ma.fields.UUID(metadata={"description": "Only the runs of this agent."})
    workflow = ma.fields.String(validate=FullMatch(WORKFLOW_NAME, error=NAME_RULE),
                                metadata={"description": "Only the runs of this stored workflow (any version)."})
    created_after = ma.fields.AwareDateTime(default_timezone=UTC, metadata={
        "description": "Only runs created at or after this time (ISO 8601; without an offset, UTC)."})
    created_before = ma.fields.AwareDateTime(default_timezone=UTC, metadata={
        "description": "Only runs created before this time (ISO 8601; without an offset, UTC)."})


class TimelineArgsSchema(ma.Schema):
    after_id = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=_BIGINT),
                                 metadata={"description": "Only events with a larger id (resume a read)."})


class FailureSchema(ma.Schema):
    """A failure: its catalog code and what the catalog says about it."""

    code = ma.fields.String(required=True, metadata={"description": "Failure-catalog code."})
    message = ma.fields.String(required=True, allow_none=True)
    category = ma.fields.String(required=True)
    retryable = ma.fields.Boolean(required=True)
    recovery_mode = ma.fields.String(required=True, metadata={
        "description": "RETRY, RETRY_AFTER, FALLBACK, SKIP, ABORT, ESCALATE or CIRCUIT_OPEN."})
    suggestion = ma.fields.String(required=True, metadata={"description": "What to do next, in one line."})


class BudgetSchema(ma.Schema):
    max_cost_usd = ma.fields.Float(required=True, allow_none=True)
    max_tokens = ma.fields.Integer(required=True, allow_none=True)
    max_steps = ma.fields.Integer(required=True, allow_none=True)
    max_wall_s = ma.fields.Integer(required=True, allow_none=True)
    spent_cost_usd = ma.fields.Float(required=True)
    spent_tokens = ma.fields.Integer(required=True)
    steps_started = ma.fields.Integer(required=True)


class StepSchema(ma.Schema):
    id = ma.fields.String(required=True)
    index = ma.fields.Integer(required=True)
    skill = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={
        "description": "pending, running, retrying (a failed attempt, the next one due at `next_attempt_at`), "
                       "waiting, succeeded, failed, skipped or not_run"})
    attempts = ma.fields.Integer(required=True, metadata={"description": "How many attempts started."})
    output = ma.fields.Raw(required=True, allow_none=True)
    output_ref = ma.fields.String(required=True, allow_none=True,
                                  metadata={"description": "Where a large output can be fetched."})
    error = ma.fields.Nested(FailureSchema, required=True, allow_none=True)
    cost_usd = ma.fields.Float(required=True)
    tokens = ma.fields.Integer(required=True)
    started_at = timestamp(required=True, allow_none=True)
    finished_at = timestamp(required=True, allow_none=True)
    duration_ms = ma.fields.Float(required=True, allow_none=True)
    next_attempt_at = timestamp(required=True, allow_none=True, metadata={
        "description": "When a retrying step's next attempt is due (null otherwise)."})


class AttemptSchema(ma.Schema):
    attempt = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True, metadata={"description": "running, succeeded, failed or skipped"})
    args = ma.fields.Raw(required=True, allow_none=True, metadata={"description": "The resolved args."})
    output = ma.fields.Raw(required=True, allow_none=True)
    output_ref = ma.fields.String(required=True, allow_none=True)
    error = ma.fields.Nested(FailureSchema, required=True, allow_none=True)
    cost_usd = ma.fields.Float(required=True)
    input_tokens = ma.fields.Integer(required=True)
    output_tokens = ma.fields.Integer(required=True)
    worker = ma.fields.String(required=True, allow_none=True, metadata={
        "description": "The process that ran the attempt (host:pid/delivery): shown to the operator scope only, "
                       "null for tenants."})
    started_at = timestamp(required=True, allow_none=True)
    finished_at = timestamp(required=True, allow_none=True)
    duration_ms = ma.fields.Float(required=True, allow_none=True)


def _skill(ref: str) -> Any:
    try:
        return default_registry().resolve(ref)
    except AosError:
        return None  # a skill this process does not know: its args are still redacted by name


class StepDetailSchema(StepSchema):
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema), required=True,
                              metadata={"description": "Every attempt, oldest first. Secrets in the resolved args "
                                                       "(credential headers and keys, URL user-info, secret query "
                                                       "values, what the skill declares secret) read ***."})

    @ma.post_dump
    def _redact(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        skill = _skill(data["skill"])
        for attempt in data["attempts"]:
            attempt["args"] = redact_args(skill, attempt["args"])
        return data


class StepOutputSchema(ma.Schema):
    output = ma.fields.Raw(required=True, allow_none=True, metadata={"description": "The full output."})


class RunSummarySchema(ma.Schema):
    id = ma.fields.String(required=True)
    name = ma.fields.String(required=True, allow_none=True)
    status = ma.fields.String(required=True, metadata={"description": ", ".join(RUN_STATUSES)})
    steps_total = ma.fields.Integer(required=True)
    next_step = ma.fields.Integer(required=True)
    agent_id = ma.fields.String(required=True, allow_none=True)
    workflow_id = ma.fields.String(required=True, allow_none=True)
    error = ma.fields.Nested(FailureSchema, required=True, allow_none=True)
    budget = ma.fields.Nested(BudgetSchema, required=True)
    plan_hash = ma.fields.String(required=True, metadata={
        "description": "SHA-256 of the plan as submitted; an amended step does not change it (see `amendments`)."})
    created_at = timestamp(required=True, allow_none=True)
    started_at = timestamp(required=True, allow_none=True)
    finished_at = timestamp(required=True, allow_none=True)


class WaitingSchema(ma.Schema):
    signal = ma.fields.String(required=True, metadata={"description": "The signal's name: POST "
                                                                      "/runs/{id}/signals/{signal} delivers it."})
    kind = ma.fields.String(required=True, metadata={"description": "signal (a signal.wait or human.approve step) or "
                                                                    "escalation (a failed step with on_error ESCALATE)"})
    step_id = ma.fields.String(required=True)
    reason = ma.fields.String(required=True, allow_none=True)
    schema = ma.fields.Dict(required=True, allow_none=True,
                            metadata={"description": "The JSON Schema the payload must match (null: any JSON)."})
    deadline = timestamp(required=True, allow_none=True, metadata={
        "description": "When the step fails with SIGNAL_TIMEOUT (null: no deadline)."})
    since = timestamp(required=True, allow_none=True)


class AmendmentSchema(ma.Schema):
    """A step of the run changed after submission, by a person applying a recovery suggestion."""

    id = ma.fields.String(required=True)
    plan_revision = ma.fields.Integer(required=True, metadata={"description": "The run's plan revision it made "
                                                                             "(1 for the first)."})
    step_index = ma.fields.Integer(required=True)
    step_id = ma.fields.String(required=True)
    after_attempt = ma.fields.Integer(required=True, metadata={
        "description": "The step's attempts that ran before it; later attempts ran the amended step."})
    changes = ma.fields.Dict(required=True, metadata={
        "description": "Each changed field (timeout_s, max_attempts, args, fallback_skill): {\"from\", \"to\"}; "
                       "args show only the fields that changed, secrets read ***."})
    step_hash_before = ma.fields.String(required=True)
    step_hash_after = ma.fields.String(required=True)
    suggestion_id = ma.fields.String(required=True, allow_none=True)
    applied_by = ma.fields.String(required=True, metadata={"description": "person (auto-apply never amends)."})
    created_at = timestamp(required=True, allow_none=True)
    summary = ma.fields.String(required=True, metadata={
        "description": "One line: `step 0 (fetch) amended by suggestion …: timeout_s 30→60`."})


class RunSchema(RunSummarySchema):
    inputs = ma.fields.Dict(required=True, metadata={"description": "The run's inputs; secrets read ***."})
    steps = ma.fields.List(ma.fields.Nested(StepSchema), required=True)
    waiting = ma.fields.Nested(WaitingSchema, required=True, allow_none=True,
                               metadata={"description": "What a waiting run waits for (null otherwise)."})
    amendments = ma.fields.List(ma.fields.Nested(AmendmentSchema), required=True, metadata={
        "description": "The run's amended steps, oldest first (empty: the run runs its plan as submitted)."})

    @ma.post_dump
    def _redact(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["inputs"] = redact_value(data["inputs"])
        return data


RunPageSchema = page_of(RunSummarySchema, "RunPage")


class LastEventIdSchema(ma.Schema):
    last_event_id = ma.fields.Integer(data_key="Last-Event-ID", load_default=0,
                                      validate=ma.validate.Range(min=0, max=_BIGINT),
                                      metadata={"description": "Resume after this event id (EventSource sends it "
                                                               "on reconnect)."})


class EventSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    type = ma.fields.String(required=True)
    step_id = ma.fields.String(required=True, allow_none=True)
    data = ma.fields.Dict(required=True)
    at = timestamp(required=True, allow_none=True)


class TimelineSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EventSchema), required=True)


class SignalSchema(ma.Schema):
    data = ma.fields.Raw(required=True, allow_none=True, metadata={
        "description": "The payload (any JSON): checked against the wait's schema, it becomes the step's output."})
    idempotency_key = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200), metadata={
        "description": "Sent again with the same key, the delivery is answered as the first one was and changes "
                       "nothing."})


class SignalResultSchema(ma.Schema):
    run_id = ma.fields.String(required=True)
    signal = ma.fields.String(required=True)
    step_id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, metadata={"description": "The run's status after the delivery."})
    duplicate = ma.fields.Boolean(required=True, metadata={
        "description": "True when this key had been delivered already: nothing changed."})


class SignalRecordSchema(WaitingSchema):
    status = ma.fields.String(required=True, metadata={"description": "waiting, signalled, expired or cancelled"})
    payload = ma.fields.Raw(required=True, allow_none=True)
    idempotency_key = ma.fields.String(required=True, allow_none=True)
    resolved_at = timestamp(required=True, allow_none=True)


class SignalListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SignalRecordSchema), required=True)
