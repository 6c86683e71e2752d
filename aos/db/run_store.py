"""The submission's statements: a run, its enqueue and its ``run.queued`` event in one round trip.

``insert_run`` runs on any psycopg connection: one of ``aos.db.direct.durable()`` for a submission on
its own (one durable commit), or a session's connection inside a larger transaction (a schedule
that advances its next fire time in the same one, a golden replay that stores its recorded calls).

The enqueue row can be born leased to the submitter (``lease_s`` > 0): the submitter publishes
right after the commit and settles the row itself, so no drainer claims it in between; if the
submitter dies first, the lease runs out and the drain publishes it. Without a lease the row is
due at once, for the drain.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from aos.db.statements import Statement

_INSERT_RUN = Statement("""
WITH r AS (
    INSERT INTO runs (id, tenant_id, agent_id, workflow_id, name, plan, plan_hash, skill_versions, inputs,
                      step_count, max_cost_usd, max_tokens, max_steps, max_wall_s)
    VALUES (%(id)s, %(tenant)s, %(agent)s, %(workflow)s, %(name)s, %(plan)s::jsonb, %(plan_hash)s,
            %(skill_versions)s::jsonb, %(inputs)s::jsonb, %(step_count)s, %(max_cost_usd)s, %(max_tokens)s,
            %(max_steps)s, %(max_wall_s)s)
    RETURNING id, tenant_id, created_at
), o AS (
    INSERT INTO outbox (tenant_id, topic, payload, attempts, next_attempt_at)
    SELECT r.tenant_id, %(topic)s, %(payload)s::jsonb, CASE WHEN %(lease_s)s::float8 > 0 THEN 1 ELSE 0 END,
           now() + make_interval(secs => %(lease_s)s::float8)
    FROM r
    RETURNING id, attempts, next_attempt_at, created_at
), e AS (
    INSERT INTO run_events (tenant_id, run_id, type, data)
    SELECT r.tenant_id, r.id, 'run.queued', %(queued)s::jsonb FROM r
)
SELECT o.id, o.attempts, o.next_attempt_at, o.created_at, r.created_at AS run_created_at FROM o, r
""")


# A run that a concurrency limit applies to: stored waiting for a slot, with no enqueue; the caller's
# transaction then gives slots out (aos.services.concurrency.admit), this run's perhaps among them.
_INSERT_WAITING_RUN = Statement("""
WITH r AS (
    INSERT INTO runs (id, tenant_id, agent_id, workflow_id, name, plan, plan_hash, skill_versions, inputs,
                      step_count, max_cost_usd, max_tokens, max_steps, max_wall_s, concurrency, waiting_since)
    VALUES (%(id)s, %(tenant)s, %(agent)s, %(workflow)s, %(name)s, %(plan)s::jsonb, %(plan_hash)s,
            %(skill_versions)s::jsonb, %(inputs)s::jsonb, %(step_count)s, %(max_cost_usd)s, %(max_tokens)s,
            %(max_steps)s, %(max_wall_s)s, %(concurrency)s::jsonb, clock_timestamp())
    RETURNING id, tenant_id, created_at
), e AS (
    INSERT INTO run_events (tenant_id, run_id, type, data)
    SELECT r.tenant_id, r.id, 'run.queued', %(queued)s::jsonb FROM r
)
SELECT r.created_at AS run_created_at FROM r
""")


@dataclass(frozen=True)
class NewRun:
    """What a submission stores, already validated and serialised (JSON fields are text)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str | None
    plan: str
    plan_hash: str
    skill_versions: str
    inputs: str
    step_count: int
    agent_id: uuid.UUID | None = None
    workflow_id: uuid.UUID | None = None
    max_cost_usd: Decimal | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    max_wall_s: int | None = None
    concurrency: str | None = None  # the groups it counts in (JSON text); None: no limit applies



@dataclass(frozen=True)
class EnqueueRow:
    """The run's enqueue outbox row as inserted; (attempts, lease_until) fence its settlement."""

    id: int
    attempts: int
    lease_until: datetime
    created_at: datetime
    run_created_at: datetime  # the run's own created_at


def insert_run(conn: psycopg.Connection[Any], run: NewRun, *, topic: str, payload: str, queued: str,
               lease_s: float) -> EnqueueRow:
    row = _INSERT_RUN.one(conn, **{
        "id": run.id, "tenant": run.tenant_id, "agent": run.agent_id, "workflow": run.workflow_id,
        "name": run.name, "plan": run.plan, "plan_hash": run.plan_hash, "skill_versions": run.skill_versions,
        "inputs": run.inputs, "step_count": run.step_count, "max_cost_usd": run.max_cost_usd,
        "max_tokens": run.max_tokens, "max_steps": run.max_steps, "max_wall_s": run.max_wall_s,
        "topic": topic, "payload": payload, "queued": queued, "lease_s": float(lease_s)})
    assert row is not None
    return EnqueueRow(row["id"], row["attempts"], row["next_attempt_at"], row["created_at"], row["run_created_at"])


def insert_waiting_run(conn: psycopg.Connection[Any], run: NewRun, *, queued: str) -> datetime:
    """Store a run that waits for a concurrency slot (no enqueue yet); its created_at."""
    row = _INSERT_WAITING_RUN.one(conn, **{
        "id": run.id, "tenant": run.tenant_id, "agent": run.agent_id, "workflow": run.workflow_id,
        "name": run.name, "plan": run.plan, "plan_hash": run.plan_hash, "skill_versions": run.skill_versions,
        "inputs": run.inputs, "step_count": run.step_count, "max_cost_usd": run.max_cost_usd,
        "max_tokens": run.max_tokens, "max_steps": run.max_steps, "max_wall_s": run.max_wall_s,
        "concurrency": run.concurrency, "queued": queued})
    assert row is not None
    return row["run_created_at"]
