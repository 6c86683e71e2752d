"""Schemas of /inspect."""

from __future__ import annotations

import marshmallow as ma

from aos.web.schemas import timestamp


class QueueSchema(ma.Schema):
    name = ma.fields.String(required=True)
    depth = ma.fields.Integer(required=True, allow_none=True, metadata={"description": "Messages waiting."})


class WorkerSchema(ma.Schema):
    name = ma.fields.String(required=True)
    last_seen = timestamp(required=True)


class OutboxSchema(ma.Schema):
    pending = ma.fields.Integer(required=True)
    dead = ma.fields.Integer(required=True)
    oldest_pending_age_s = ma.fields.Float(required=True, allow_none=True)


class DeadLettersSchema(ma.Schema):
    open = ma.fields.Integer(required=True)


class ActiveRunsSchema(ma.Schema):
    queued = ma.fields.Integer(required=True)
    running = ma.fields.Integer(required=True)


class InspectSchema(ma.Schema):
    scope = ma.fields.String(required=True, validate=ma.validate.OneOf(["tenant", "deployment"]), metadata={
        "description": "`tenant`: the figures are the caller's tenant's, queues and workers are not shown; "
                       "`deployment` (operator scope): queues, workers and every tenant's figures."})
    queues = ma.fields.List(ma.fields.Nested(QueueSchema), required=True, allow_none=True, metadata={
        "description": "Broker queues AOS uses (operator scope); null for tenants, or when the broker did not "
                       "answer (see errors)."})
    workers = ma.fields.List(ma.fields.Nested(WorkerSchema), required=True, allow_none=True, metadata={
        "description": "Workers that answered a ping (operator scope); null for tenants, or when the ping failed "
                       "(see errors)."})
    outbox = ma.fields.Nested(OutboxSchema, required=True)
    dead_letters = ma.fields.Nested(DeadLettersSchema, required=True)
    runs = ma.fields.Nested(ActiveRunsSchema, required=True)
    errors = ma.fields.List(ma.fields.String(), required=True)
    checked_at = timestamp(required=True)
